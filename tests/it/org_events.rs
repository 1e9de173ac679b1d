//! Organization audit events (Admin API) against the simulator and real PostgreSQL: exact full
//! and incremental syncs, events appended while paging, wrong key and organization, `check`,
//! a SIGKILL of the real binary mid-run, and the key kept out of trace-level output.

use crate::support::Env;
use crate::support::cli::{
    ConfigFile, jira_sync, quiet_sync, run, site_toml, sync_to_the_end, text, write_config,
};
use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator};
use jira_sync::engine::progress::Quiet;
use jira_sync::engine::runner::{select, sync_once};
use jira_sync::engine::{OutcomeStatus, StreamOutcome};
use jira_sync::settings::Settings;
use jira_sync::streams::Registry;
use jira_sync::streams::org_events::{NOT_CONFIGURED, WRONG_KEY, WRONG_ORG};
use secrecy::SecretString;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM_PATH: &str = "/admin/v1/orgs/";

/// `settings` pointed at the simulator's organization, with test-speed Admin API pacing.
fn with_org(mut settings: Settings, sim: &Simulator) -> Settings {
    let config = sim.config();
    settings.jira.org_id = Some(config.org_id.clone());
    settings.jira.org_api_key = Some(SecretString::from(config.org_api_key.clone()));
    settings.jira.admin_base_url = url::Url::parse(&sim.base_url()).expect("simulator URL");
    settings.sync.org_events = true;
    settings.rate_limit.admin_requests_per_second = 500.0;
    settings.rate_limit.admin_burst = 100;
    settings
}

async fn run_org(env: &Env, settings: &Settings) -> StreamOutcome {
    let mut outcomes = sync_once(
        settings,
        env.store(),
        &["org_events"],
        false,
        Arc::new(Quiet),
    )
    .await
    .expect("the sync starts");
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

fn assert_succeeded(outcome: &StreamOutcome) {
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
}

async fn stored_ids(pool: &PgPool) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM jira.org_events ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("read org events");
    rows.into_iter().map(|(id,)| id).collect()
}

fn truth_ids(sim: &Simulator) -> Vec<String> {
    let mut ids = sim.truth().org_event_ids;
    ids.sort();
    ids
}

async fn count(pool: &PgPool) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM jira.org_events")
        .fetch_one(pool)
        .await
        .expect("count org events");
    n
}

/// Polls `check` until it holds, failing after 30 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every response a little slow, so that work can happen (or a kill land) between pages.
fn slow(delay_ms: u64) -> FaultPlan {
    FaultPlan {
        rate: 1.0,
        kinds: vec![FaultKind::Slow { delay_ms }],
        ..FaultPlan::default()
    }
}

#[tokio::test]
async fn a_sync_with_an_org_key_stores_exactly_the_organizations_events() {
    let env = Env::start(SimConfig::small()).await;
    let settings = with_org(env.settings.clone(), &env.sim);
    assert!(
        select(&Registry::new(&settings).expect("streams"), &[])
            .expect("streams")
            .contains(&"org_events")
    );
    assert!(
        !select(&Registry::new(&env.settings).expect("streams"), &[])
            .expect("streams")
            .contains(&"org_events")
    );

    let outcome = run_org(&env, &settings).await;
    assert_succeeded(&outcome);
    let want = truth_ids(&env.sim);
    assert_eq!(want.len(), 240);
    assert_eq!(stored_ids(&env.db.pool).await, want);
    assert_eq!(outcome.rows_written, 240);
    // 240 events at 200 a page: two pages, then the poll that finds nothing more.
    assert_eq!(env.sim.request_count(STREAM_PATH), 3);
    assert_eq!(outcome.requests, 3);

    let (products, with_email, processed, with_container): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT product), count(actor_email), count(processed_at), \
             count(*) FILTER (WHERE jsonb_typeof(container) = 'array') FROM jira.org_events",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("columns");
    assert!(products >= 4, "events spread over products: {products}");
    assert!(with_email > 50 && processed == 240 && with_container == 240);
    let (org,): (String,) = sqlx::query_as("SELECT DISTINCT org_id FROM jira.org_events")
        .fetch_one(&env.db.pool)
        .await
        .expect("one organization");
    assert_eq!(org, env.sim.config().org_id);
}

#[tokio::test]
async fn an_incremental_run_after_new_events_adds_exactly_those_through_the_saved_cursor() {
    let env = Env::start(SimConfig::small()).await;
    let settings = with_org(env.settings.clone(), &env.sim);
    assert_succeeded(&run_org(&env, &settings).await);
    let before = env.sim.request_log().len();

    let appended: Vec<String> = (0..7).map(|_| env.sim.add_org_event()).collect();
    let outcome = run_org(&env, &settings).await;
    assert_succeeded(&outcome);
    assert_eq!(outcome.mode.name(), "incremental");
    assert_eq!((outcome.rows_seen, outcome.rows_written), (7, 7));
    assert_eq!(stored_ids(&env.db.pool).await, truth_ids(&env.sim));
    let feed: Vec<_> = env.sim.request_log()[before..]
        .iter()
        .filter(|r| r.path.starts_with(STREAM_PATH))
        .cloned()
        .collect();
    assert_eq!(feed.len(), 2, "the new events, then nothing more: {feed:?}");
    assert!(
        feed.iter().all(|r| r.query.starts_with("cursor=")),
        "the saved cursor is reused: {feed:?}"
    );
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM jira.org_events ORDER BY processed_at DESC, id LIMIT 7")
            .fetch_all(&env.db.pool)
            .await
            .expect("newest");
    let mut newest: Vec<String> = stored.into_iter().map(|(id,)| id).collect();
    let mut appended_sorted = appended;
    newest.sort();
    appended_sorted.sort();
    assert_eq!(newest, appended_sorted);

    let idle = run_org(&env, &settings).await;
    assert_succeeded(&idle);
    assert_eq!(
        (idle.rows_seen, idle.rows_written, idle.requests),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn events_appended_while_paging_are_neither_lost_nor_duplicated() {
    let env = Env::start(SimConfig {
        org_events: 1_000,
        ..SimConfig::small()
    })
    .await;
    let settings = with_org(env.settings.clone(), &env.sim);
    env.sim.set_faults(slow(40));
    let sync = {
        let (settings, store) = (settings.clone(), env.store());
        tokio::spawn(async move {
            sync_once(&settings, store, &["org_events"], false, Arc::new(Quiet)).await
        })
    };
    eventually("the first page to be committed", || async {
        count(&env.db.pool).await > 0
    })
    .await;
    // Five pages at 40 ms each: the run is still paging while these arrive.
    for _ in 0..25 {
        env.sim.add_org_event();
    }
    assert!(
        !sync.is_finished(),
        "the events arrived while the run was paging"
    );
    let first = sync.await.expect("task").expect("sync").remove(0);
    assert_succeeded(&first);
    // They land behind the cursor, so the same run reads them, each once.
    assert_eq!(stored_ids(&env.db.pool).await, truth_ids(&env.sim));
    assert_eq!((first.rows_seen, first.rows_written), (1_025, 1_025));
    env.sim.set_faults(FaultPlan::default());
    let second = run_org(&env, &settings).await;
    assert_succeeded(&second);
    assert_eq!((second.rows_seen, second.rows_written), (0, 0));
    assert_eq!(count(&env.db.pool).await, 1_025);
}

#[tokio::test]
async fn a_wrong_key_or_organization_fails_the_stream_at_once_with_what_to_fix() {
    let env = Env::start(SimConfig::small()).await;
    // The most common mistake: the site's API token where the organization key belongs.
    let mut site_token = with_org(env.settings.clone(), &env.sim);
    site_token.jira.org_api_key = Some(SecretString::from(env.sim.config().api_token.clone()));
    let outcome = run_org(&env, &site_token).await;
    let OutcomeStatus::Failed(err) = &outcome.status else {
        panic!("expected a failure: {}", outcome.summary());
    };
    let message = format!("{err:#}");
    assert!(message.contains(WRONG_KEY), "{message}");
    assert!(message.contains("jira.org_api_key"), "{message}");
    assert_eq!(
        jira_sync::commands::exit::code_for(err),
        jira_sync::commands::exit::INVALID_CONFIG
    );
    assert_eq!(
        env.sim.request_count(STREAM_PATH),
        1,
        "a 401 is never retried"
    );

    let mut other_org = with_org(env.settings.clone(), &env.sim);
    other_org.jira.org_id = Some("0f0e0d0c-0b0a-4909-8807-060504030201".to_owned());
    let outcome = run_org(&env, &other_org).await;
    let OutcomeStatus::Failed(err) = &outcome.status else {
        panic!("expected a failure: {}", outcome.summary());
    };
    assert!(format!("{err:#}").contains(WRONG_ORG), "{err:#}");
    assert_eq!(
        env.sim.request_count(STREAM_PATH),
        2,
        "a 404 is never retried"
    );
    assert_eq!(count(&env.db.pool).await, 0);

    env.sim.set_org_key_scope(false);
    let outcome = run_org(&env, &with_org(env.settings.clone(), &env.sim)).await;
    let OutcomeStatus::Skipped(why) = &outcome.status else {
        panic!(
            "a key without the scope skips the stream: {}",
            outcome.summary()
        );
    };
    assert!(why.contains("read:events:admin"), "{why}");
}

#[tokio::test]
async fn check_reports_the_org_stream_for_each_kind_of_key_problem() {
    let env = Env::start(SimConfig::small()).await;
    let report = |settings: Settings| async move {
        let report = jira_sync::engine::check::run(&settings)
            .await
            .expect("check runs");
        assert!(report.ok, "org problems never fail the site's check");
        report.streams["org_events"].clone()
    };
    let unconfigured = report(env.settings.clone()).await;
    assert!(!unconfigured.enabled && !unconfigured.available);
    assert_eq!(unconfigured.reason.as_deref(), Some(NOT_CONFIGURED));

    let ok = report(with_org(env.settings.clone(), &env.sim)).await;
    assert!(ok.enabled && ok.available, "{ok:?}");
    assert!(
        ok.detail
            .unwrap_or_default()
            .contains(&env.sim.config().org_id)
    );

    let mut wrong_key = with_org(env.settings.clone(), &env.sim);
    wrong_key.jira.org_api_key = Some(SecretString::from("not-the-org-key"));
    let r = report(wrong_key).await;
    assert!(!r.available && r.reason.unwrap_or_default().contains(WRONG_KEY));

    let mut wrong_org = with_org(env.settings.clone(), &env.sim);
    wrong_org.jira.org_id = Some("0f0e0d0c-0b0a-4909-8807-060504030201".to_owned());
    let r = report(wrong_org).await;
    assert!(!r.available && r.reason.unwrap_or_default().contains(WRONG_ORG));

    env.sim.set_org_key_scope(false);
    let r = report(with_org(env.settings.clone(), &env.sim)).await;
    assert!(!r.available && r.reason.unwrap_or_default().contains("read:events:admin"));
}

/// A config file for the binary: the site, the simulator's organization and fast pacing.
fn org_config(sim: &Simulator, org_key: &str) -> ConfigFile {
    let config = sim.config();
    let org = format!(
        "[jira]\norg_id = \"{}\"\norg_api_key = \"{org_key}\"\nadmin_base_url = \"{}\"\n",
        config.org_id,
        sim.base_url()
    );
    let mut toml =
        site_toml(&sim.base_url(), &config.email, &config.api_token).replacen("[jira]\n", &org, 1);
    toml.push_str("admin_requests_per_second = 200.0\nadmin_burst = 50\n");
    write_config(&toml)
}

#[tokio::test]
async fn check_through_the_binary_lists_the_org_stream_as_ok() {
    let env = Env::start(SimConfig::small()).await;
    let file = org_config(&env.sim, &env.sim.config().org_api_key);
    let mut cmd = jira_sync();
    cmd.arg("--config").arg(&file.path).arg("check");
    let output = run(cmd).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("org_events"));
    assert!(line.is_some_and(|l| l.contains(" ok ")), "{stdout}");
}

#[tokio::test]
async fn killing_the_binary_mid_run_loses_nothing_and_the_rerun_resumes_from_the_cursor() {
    let env = Env::start(SimConfig {
        org_events: 2_000,
        ..SimConfig::small()
    })
    .await;
    let file = org_config(&env.sim, &env.sim.config().org_api_key);
    let sync = || quiet_sync(&file.path, &env.db.url, &["--stream", "org_events"]);
    env.sim.set_faults(slow(60));
    let mut child = sync().spawn().expect("start jira-sync");
    eventually("a committed page", || async {
        count(&env.db.pool).await > 0
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let after_kill = count(&env.db.pool).await;
    assert!(
        after_kill < 2_000,
        "the kill landed mid-run ({after_kill} stored)"
    );

    sync_to_the_end(sync()).await;
    assert_eq!(stored_ids(&env.db.pool).await, truth_ids(&env.sim));
    // Ten pages and the final poll, plus at most the page that was in flight at the kill.
    let requests = env.sim.request_count(STREAM_PATH);
    assert!(
        requests <= 12,
        "{requests} feed requests: the rerun started over"
    );
}

#[tokio::test]
async fn the_org_api_key_never_appears_in_output_at_trace_level() {
    let secret = "org-key-Zq81-do-not-print";
    let env = Env::start(SimConfig {
        org_api_key: secret.to_owned(),
        ..SimConfig::small()
    })
    .await;
    for (key, args) in [
        (
            secret,
            &["sync", "--once", "--no-progress", "--stream", "org_events"][..],
        ),
        (secret, &["check"][..]),
        (
            "wrong-key-Zq81-do-not-print",
            &["sync", "--once", "--stream", "org_events"][..],
        ),
    ] {
        let file = org_config(&env.sim, key);
        let mut cmd = jira_sync();
        cmd.arg("--config")
            .arg(&file.path)
            .arg("--log-level")
            .arg("trace")
            .args(args)
            .env("DATABASE_URL", &env.db.url);
        let output = run(cmd).await;
        let (stdout, stderr) = text(&output);
        assert!(
            stderr.contains("TRACE"),
            "trace output is on: {stderr:.400}"
        );
        assert!(stdout.contains("org_events") || stderr.contains("org_events"));
        for (name, out) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert!(
                !out.contains(key),
                "{name} of {args:?} shows the org API key"
            );
            assert!(
                !out.contains("Zq81"),
                "{name} of {args:?} shows part of the key"
            );
        }
    }
    assert_eq!(count(&env.db.pool).await, 240);
}

mod config {
    use crate::support::cli::write_config;
    use jira_sync::settings::Settings;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    const SITE: &str = "[jira]\nemail = \"ada@example.com\"\napi_token = \"t\"\n\
                        base_url = \"https://acme.atlassian.net\"\n";
    const ORG: &str = "5d1e9c2a-7b3f-4e8d-a6c1-0f2e4b8d9a37";

    fn load(extra: &str, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let file = write_config(&format!("{SITE}{extra}"));
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(Some(&file.path), env).map_err(|e| e.to_string())
    }

    #[test]
    fn org_events_sync_when_an_org_id_and_key_are_set_with_slow_admin_pacing() {
        let s = load("", &[]).expect("valid");
        assert!(!s.sync.org_events, "not configured: not synced");
        assert_eq!(s.jira.admin_base_url.as_str(), "https://api.atlassian.com/");
        assert_eq!(s.sync.org_events_interval_secs, 900);
        assert!(s.rate_limit.admin_requests_per_second <= 1.0);
        let key = ("JIRA_SYNC__JIRA__ORG_API_KEY", "org-key");
        let s = load(&format!("org_id = \"{ORG}\"\n"), &[key]).expect("valid");
        assert!(s.sync.org_events);
        let key_text = s
            .jira
            .org_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        assert_eq!(key_text.as_deref(), Some("org-key"));
        let off = load(
            &format!("org_id = \"{ORG}\"\n[sync]\norg_events = false\n"),
            &[key],
        );
        assert!(!off.expect("valid").sync.org_events);
    }

    #[test]
    fn org_settings_are_validated_with_the_key_to_fix() {
        let err = load("org_api_key = \"k\"\n", &[]).expect_err("no org id");
        assert!(err.contains("jira.org_id"), "{err}");
        let err = load("admin_base_url = \"http://api.example.com\"\n", &[]).expect_err("http");
        assert!(
            err.contains("jira.admin_base_url") && err.contains("https"),
            "{err}"
        );
        assert!(load("admin_base_url = \"http://127.0.0.1:9\"\n", &[]).is_ok());
        let err = load(
            "admin_base_url = \"https://api.atlassian.com/admin\"\n",
            &[],
        );
        assert!(err.expect_err("a path").contains("jira.admin_base_url"));
        let err = load("[rate_limit]\nadmin_requests_per_second = 0\n", &[]).expect_err("0");
        assert!(
            err.contains("rate_limit.admin_requests_per_second"),
            "{err}"
        );
        let err = load("[sync]\norg_events_interval_secs = 0\n", &[]).expect_err("0");
        assert!(err.contains("sync.org_events_interval_secs"), "{err}");
    }

    #[test]
    fn the_org_key_may_come_from_a_file_but_not_from_both_places() {
        let key_file = write_config("  file-org-key \n");
        let path = key_file.path.display();
        let org = format!("org_id = \"{ORG}\"\norg_api_key_file = \"{path}\"\n");
        let s = load(&org, &[]).expect("valid");
        let key = s
            .jira
            .org_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        assert_eq!(key.as_deref(), Some("file-org-key"));
        let err = load(&format!("{org}org_api_key = \"inline\"\n"), &[]).expect_err("both");
        assert!(err.contains("jira.org_api_key_file"), "{err}");
        assert!(
            !err.contains("inline") && !err.contains("file-org-key"),
            "{err}"
        );
    }
}
