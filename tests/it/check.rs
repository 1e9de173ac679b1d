//! Integration tests: `jira-sync check`, the real binary against the simulator over HTTP.

use crate::support::cli::{
    closed_port, expect_exit, html_server, jira_sync, run, run_with_config, site_toml, text,
    write_config,
};
use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator};
use std::process::Output;

/// The simulator's own answer to `/myself`, read without going through jira-sync.
async fn myself(sim: &Simulator, config: &SimConfig) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/rest/api/3/myself", sim.base_url()))
        .basic_auth(&config.email, Some(&config.api_token))
        .send()
        .await
        .expect("simulator answers")
        .json()
        .await
        .expect("simulator sends JSON")
}

async fn check(sim: &Simulator, config: &SimConfig, token: &str, args: &[&str]) -> Output {
    let file = write_config(&site_toml(&sim.base_url(), &config.email, token));
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    run_with_config(&file, &all).await
}

/// A simulator serving the site `config` describes, and that configuration.
async fn site_with(config: SimConfig) -> (Simulator, SimConfig) {
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    (sim, config)
}

fn report(output: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(output);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout:?}, stderr {stderr}"))
}

/// The state column ("ok", "skipped", "disabled") of a stream's line in the text report, and
/// the whole line.
fn stream_line(stdout: &str, stream: &str) -> (String, String) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stream))
        .unwrap_or_else(|| panic!("no line for {stream} in {stdout}"));
    let state = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (state, line.to_owned())
}

/// How many requests to `path` the simulator has served.
fn requests_to(sim: &Simulator, path: &str) -> usize {
    sim.request_log().iter().filter(|r| r.path == path).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_against_the_simulator_prints_the_report_and_exits_0() {
    let (sim, config) = site_with(SimConfig {
        user_time_zone: "Australia/Sydney".to_owned(),
        ..SimConfig::small()
    })
    .await;
    let me = myself(&sim, &config).await;
    let output = check(&sim, &config, &config.api_token, &[]).await;
    let (stdout, _) = expect_exit(&output, 0);
    let name = me["displayName"].as_str().expect("display name");
    assert_eq!(me["timeZone"], "Australia/Sydney");
    assert!(stdout.starts_with("connected: "), "{stdout}");
    assert!(stdout.contains(name), "{stdout}");
    assert!(stdout.contains("time zone   Australia/Sydney"), "{stdout}");
    for stream in ["projects", "issues", "users", "audit_records"] {
        assert_eq!(
            stream_line(&stdout, stream).0,
            "ok",
            "{stream} should be available: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_json_prints_one_object_with_the_account_and_every_stream_available() {
    let (sim, config) = site_with(SimConfig {
        user_time_zone: "America/Los_Angeles".to_owned(),
        ..SimConfig::small()
    })
    .await;
    let me = myself(&sim, &config).await;
    let output = check(&sim, &config, &config.api_token, &["--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let report = report(&output);
    assert_eq!(report["ok"], true);
    assert_eq!(report["account"]["account_id"], me["accountId"]);
    assert_eq!(report["account"]["time_zone"], "America/Los_Angeles");
    assert!(
        report["server"]["skew_secs"]
            .as_i64()
            .is_some_and(|s| s.abs() < 60),
        "{report}"
    );
    for stream in ["projects", "issues", "users", "audit_records"] {
        assert_eq!(report["streams"][stream]["available"], true, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_exits_3_after_a_single_request() {
    let (sim, config) = site_with(SimConfig::small()).await;
    let output = check(&sim, &config, "not-the-token", &[]).await;
    let (_, stderr) = expect_exit(&output, 3);
    assert!(stderr.contains("invalid credentials"), "{stderr}");
    assert!(stderr.contains("jira.api_token"), "{stderr}");
    assert_eq!(
        requests_to(&sim, "/rest/api/3/myself"),
        1,
        "a 401 must never be retried"
    );
    // Besides the one request to the site, only the one-off gateway probe (is the token a
    // scoped one?) may follow: the cloudId look-up and one gateway request.
    let site_requests = sim
        .request_log()
        .iter()
        .filter(|e| !e.path.starts_with("/ex/jira/") && e.path != "/_edge/tenant_info")
        .count();
    assert_eq!(site_requests, 1, "nothing else is called after a 401");
    assert!(sim.request_count("/ex/jira/") <= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_admin_account_gets_users_and_audit_reported_as_skipped_and_exits_0() {
    let (sim, config) = site_with(SimConfig {
        admin: false,
        ..SimConfig::small()
    })
    .await;
    let output = check(&sim, &config, &config.api_token, &[]).await;
    let (stdout, _) = expect_exit(&output, 0);
    let (users, users_line) = stream_line(&stdout, "users");
    assert!(users == "skipped" && users_line.contains("403"), "{stdout}");
    assert_eq!(
        stream_line(&stdout, "audit_records").0,
        "skipped",
        "{stdout}"
    );
    assert_eq!(stream_line(&stdout, "projects").0, "ok", "{stdout}");
    assert_eq!(stream_line(&stdout, "issues").0, "ok", "{stdout}");
    assert!(
        stdout.contains("ADMINISTER") && stdout.contains("sync.audit_records = false"),
        "{stdout}"
    );

    let output = check(&sim, &config, &config.api_token, &["--json"]).await;
    let report = report(&output);
    assert_eq!(report["ok"], true);
    assert_eq!(report["streams"]["users"]["available"], false);
    assert!(
        report["streams"]["users"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("403")),
        "{report}"
    );
    assert!(
        report["streams"]["audit_records"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("ADMINISTER")),
        "{report}"
    );
    assert_eq!(report["streams"]["issues"]["available"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_exits_5_naming_the_host() {
    let port = closed_port();
    let file = write_config(&site_toml(
        &format!("http://127.0.0.1:{port}"),
        "ada@example.com",
        "t0ken",
    ));
    let output = run_with_config(&file, &["check"]).await;
    let (_, stderr) = expect_exit(&output, 5);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_html_page_at_the_base_url_exits_5_as_not_a_jira_site() {
    let base_url = html_server().await;
    let file = write_config(&site_toml(&base_url, "ada@example.com", "t0ken"));
    let output = run_with_config(&file, &["check"]).await;
    let (_, stderr) = expect_exit(&output, 5);
    assert!(
        stderr.contains("does not look like a Jira Cloud site"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_waited_out_and_the_check_succeeds() {
    let (sim, config) = site_with(SimConfig::small()).await;
    sim.set_faults(FaultPlan {
        script: vec![FaultKind::TooManyRequests {
            retry_after_secs: Some(1),
        }],
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let output = check(&sim, &config, &config.api_token, &[]).await;
    let (_, stderr) = expect_exit(&output, 0);
    assert!(stderr.contains("retrying after"), "{stderr}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert!(
        sim.request_log().iter().any(|r| r.status == 429),
        "the simulator never throttled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_longer_than_the_bound_exits_6_without_waiting() {
    let (sim, config) = site_with(SimConfig::small()).await;
    sim.set_faults(FaultPlan {
        script: vec![FaultKind::TooManyRequests {
            retry_after_secs: Some(3600),
        }],
        ..Default::default()
    });
    let toml = site_toml(&sim.base_url(), &config.email, &config.api_token)
        .replace("[rate_limit]", "[rate_limit]\nmax_retry_after_secs = 5");
    let file = write_config(&toml);
    let output = run_with_config(&file, &["check"]).await;
    let (_, stderr) = expect_exit(&output, 6);
    assert!(
        stderr.contains("rate limited") && stderr.contains("3600"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_appears_nowhere_in_trace_level_output() {
    let secret = "tok-SECRET-5b2f9e";
    let (sim, config) = site_with(SimConfig {
        api_token: secret.to_owned(),
        ..SimConfig::small()
    })
    .await;
    for (token, expected_code) in [(secret, 0), ("tok-WRONG-SECRET-c41d07", 3)] {
        let file = write_config(&site_toml(&sim.base_url(), &config.email, token));
        let mut cmd = jira_sync();
        cmd.env("RUST_LOG", "trace")
            .arg("--config")
            .arg(&file.path)
            .args(["--log-level", "trace", "check"]);
        let output = run(cmd).await;
        let (stdout, stderr) = expect_exit(&output, expected_code);
        assert!(
            stderr.lines().count() > 5,
            "trace logging was not on: {stderr}"
        );
        let basic = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", config.email))
        };
        for leak in [token, basic.as_str()] {
            assert!(
                !stdout.contains(leak) && !stderr.contains(leak),
                "{leak} leaked:\n{stdout}\n{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_403_from_myself_exits_4_and_json_still_prints_an_object() {
    let (sim, config) = site_with(SimConfig::small()).await;
    sim.set_faults(FaultPlan {
        script: vec![FaultKind::Status(403)],
        ..Default::default()
    });
    let output = check(&sim, &config, &config.api_token, &["--json"]).await;
    let (_, stderr) = expect_exit(&output, 4);
    assert!(
        stderr.contains("permission denied on GET /rest/api/3/myself"),
        "{stderr}"
    );
    let report = report(&output);
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_from_myself_exits_5_as_not_a_jira_site() {
    let (sim, config) = site_with(SimConfig::small()).await;
    sim.set_faults(FaultPlan {
        script: vec![FaultKind::Status(404)],
        ..Default::default()
    });
    let output = check(&sim, &config, &config.api_token, &[]).await;
    let (_, stderr) = expect_exit(&output, 5);
    assert!(
        stderr.contains("does not look like a Jira Cloud site"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/rest/api/3/myself answered 404"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_on_stderr() {
    let (sim, config) = site_with(SimConfig::small()).await;
    let toml = site_toml(&sim.base_url(), &config.email, &config.api_token)
        + "\n[log]\nformat = \"json\"\nlevel = \"jira_sync=debug\"\n";
    let file = write_config(&toml);
    let output = run_with_config(&file, &["check"]).await;
    let (_, stderr) = expect_exit(&output, 0);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.len() >= 6,
        "one debug line per request expected: {stderr}"
    );
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 200 && l["path"] == "/rest/api/3/myself"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_token_needs_no_email() {
    let (sim, config) = site_with(SimConfig::small()).await;
    let toml = site_toml(&sim.base_url(), "", &config.api_token)
        .replace("[jira]", "[jira]\nauth = \"bearer\"");
    let output = run_with_config(&write_config(&toml), &["check", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(report(&output)["ok"], true);
}

/// `check --json` with `toml` as the config: exit 0 and the report.
async fn check_ok(toml: &str) -> serde_json::Value {
    let output = run_with_config(&write_config(toml), &["check", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let report = report(&output);
    assert_eq!(report["ok"], true, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn check_succeeds_in_every_auth_mode() {
    let (sim, config) = site_with(SimConfig::small()).await;
    let base = sim.base_url();
    let basic = check_ok(&site_toml(&base, &config.email, &config.api_token)).await;
    assert_eq!(basic["server"]["deployment_type"], "Cloud");

    let scoped = site_toml(&base, &config.email, &config.scoped_token).replace(
        "[jira]",
        &format!("[jira]\nauth = \"scoped\"\ngateway_base_url = \"{base}\""),
    );
    let scoped = check_ok(&scoped).await;
    assert_eq!(scoped["streams"]["users"]["available"], true, "{scoped}");
    assert!(requests_to(&sim, "/_edge/tenant_info") >= 1);

    let db = crate::support::test_db().await;
    let oauth = format!(
        "[jira]\nbase_url = \"{base}\"\nauth = \"oauth\"\ngateway_base_url = \"{base}\"\n\
         token_url = \"{base}/oauth/token\"\nauthorize_url = \"{base}/authorize\"\n\
         client_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"\n\
         token_encryption_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n\n\
         [database]\nurl = \"{}\"\n",
        config.oauth_client_id, config.oauth_client_secret, config.oauth_refresh_token, db.url
    );
    let oauth = check_ok(&oauth).await;
    assert_eq!(oauth["streams"]["issues"]["available"], true, "{oauth}");
    assert!(sim.oauth_refreshes() >= 1);

    let dc = Simulator::start(SimConfig {
        data_center: true,
        ..config.clone()
    })
    .await
    .expect("data center simulator starts");
    let bearer = site_toml(&dc.base_url(), "", &config.api_token)
        .replace("[jira]", "[jira]\nauth = \"bearer\"");
    let bearer = check_ok(&bearer).await;
    assert_eq!(bearer["server"]["deployment_type"], "DataCenter");
    // Data Center's account is its user key; its projects and users come from its own
    // endpoints, and every stream is readable.
    assert_eq!(bearer["account"]["account_id"], "JIRAUSER10000", "{bearer}");
    let projects = dc.truth().projects.iter().filter(|p| !p.archived).count();
    assert_eq!(
        bearer["streams"]["projects"]["detail"],
        format!("{projects} projects visible")
    );
    for stream in ["projects", "issues", "users", "audit_records"] {
        assert_eq!(bearer["streams"][stream]["available"], true, "{bearer}");
    }
    assert_eq!(requests_to(&dc, "/rest/api/2/project"), 1);
    assert_eq!(requests_to(&dc, "/rest/api/2/user/search"), 1);
}
