//! Integration tests: configuration layering, validation and secrecy, through `Settings::load_from`
//! (no process environment is touched) and through the real binary.

use crate::support::cli::{expect_exit, jira_sync, run, write_config};
use jira_sync::settings::{AuthMode, ConfigError, LogFormat, Settings};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::path::Path;

const MINIMAL: &str = r#"
[jira]
email = "ada@example.com"
api_token = "file-token"
base_url = "https://acme.atlassian.net"
"#;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let file = write_config(toml);
    Settings::load_from(Some(&file.path), env(vars))
}

/// The error text of a config that must be rejected.
fn rejected(toml: &str, vars: &[(&str, &str)]) -> String {
    match load(toml, vars) {
        Ok(settings) => panic!("expected a configuration error, got {settings:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_jira(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn a_minimal_file_gets_every_other_value_from_the_documented_defaults() {
    let s = load(MINIMAL, &[]).expect("valid");
    assert_eq!(s.jira.email, "ada@example.com");
    assert_eq!(s.jira.auth, AuthMode::Basic);
    assert_eq!(s.site(), "acme.atlassian.net");
    assert_eq!(s.database.max_connections, 8);
    assert!(s.database.url.is_none());
    assert!(s.sync.projects && s.sync.issues && s.sync.users && s.sync.audit_records);
    assert_eq!(s.sync.issues_interval_secs, 300);
    assert_eq!(s.sync.audit_lookback_days, 3650);
    assert_eq!(s.sync.issue_overlap_secs, 120);
    assert_eq!(s.rate_limit.requests_per_second, 8.0);
    assert_eq!(s.rate_limit.max_in_flight, 8);
    assert_eq!(s.rate_limit.max_retry_after_secs, 300);
    assert_eq!(s.log.format, LogFormat::Pretty);
    assert_eq!(s.log.level, "info");
}

#[test]
fn env_overrides_the_file_and_database_url_overrides_both() {
    let toml = with_jira("[database]\nurl = \"postgres://file@localhost/db\"");
    let s = load(
        &toml,
        &[
            ("JIRA_SYNC__JIRA__API_TOKEN", "env-token"),
            ("JIRA_SYNC__RATE_LIMIT__BURST", "3"),
            ("JIRA_SYNC__SYNC__USERS", "false"),
            ("JIRA_SYNC__DATABASE__URL", "postgres://env@localhost/db"),
            ("DATABASE_URL", "postgres://top@localhost/db"),
        ],
    )
    .expect("valid");
    assert_eq!(
        s.jira.token().map(|t| t.expose_secret().to_owned()),
        Some("env-token".into())
    );
    assert_eq!(s.rate_limit.burst, 3);
    assert!(!s.sync.users);
    let url = s
        .database
        .url
        .as_ref()
        .map(|u| u.expose_secret().to_owned());
    assert_eq!(url.as_deref(), Some("postgres://top@localhost/db"));
    let without_database_url = load(
        &toml,
        &[("JIRA_SYNC__DATABASE__URL", "postgres://env@localhost/db")],
    );
    let url = without_database_url
        .expect("valid")
        .database
        .url
        .map(|u| u.expose_secret().to_owned());
    assert_eq!(url.as_deref(), Some("postgres://env@localhost/db"));
}

#[test]
fn project_lists_come_from_comma_separated_env_values() {
    let s = load(
        MINIMAL,
        &[
            ("JIRA_SYNC__SYNC__INCLUDE_PROJECTS", "ABC, def,,GHI_2"),
            ("JIRA_SYNC__SYNC__EXCLUDE_PROJECTS", "XYZ"),
        ],
    )
    .expect("valid");
    assert_eq!(s.sync.include_projects, vec!["ABC", "DEF", "GHI_2"]);
    assert_eq!(s.sync.exclude_projects, vec!["XYZ"]);
    let both = rejected(
        MINIMAL,
        &[
            ("JIRA_SYNC__SYNC__INCLUDE_PROJECTS", "ABC"),
            ("JIRA_SYNC__SYNC__EXCLUDE_PROJECTS", "ABC"),
        ],
    );
    assert!(both.contains("sync.exclude_projects"), "{both}");
}

#[test]
fn a_token_that_looks_like_a_number_is_kept_verbatim() {
    let s = load(MINIMAL, &[("JIRA_SYNC__JIRA__API_TOKEN", "00123")]).expect("valid");
    assert_eq!(
        s.jira
            .token()
            .map(|t| t.expose_secret().to_owned())
            .as_deref(),
        Some("00123")
    );
}

#[test]
fn a_trailing_slash_is_normalised_and_path_or_query_is_rejected() {
    let s = load(&MINIMAL.replace("atlassian.net\"", "atlassian.net/\""), &[]).expect("valid");
    assert_eq!(s.jira.base_url.path(), "/");
    assert_eq!(s.site(), "acme.atlassian.net");
    let path = rejected(
        &MINIMAL.replace("atlassian.net\"", "atlassian.net/jira\""),
        &[],
    );
    assert!(
        path.contains("jira.base_url") && path.contains("path"),
        "{path}"
    );
    let query = rejected(
        &MINIMAL.replace("atlassian.net\"", "atlassian.net/?x=1\""),
        &[],
    );
    assert!(
        query.contains("jira.base_url") && query.contains("query"),
        "{query}"
    );
    let garbage = rejected(&MINIMAL.replace("https://acme.atlassian.net", "acme"), &[]);
    assert!(
        garbage.contains("jira.base_url") && garbage.contains("not a URL"),
        "{garbage}"
    );
}

#[test]
fn plain_http_is_refused_except_for_loopback_hosts() {
    let remote = rejected(&MINIMAL.replace("https://", "http://"), &[]);
    assert!(
        remote.contains("jira.base_url") && remote.contains("https://"),
        "{remote}"
    );
    for host in ["127.0.0.1:8080", "localhost:9000", "[::1]:7000"] {
        let toml = MINIMAL.replace("https://acme.atlassian.net", &format!("http://{host}"));
        let s = load(&toml, &[]).unwrap_or_else(|e| panic!("{host} is loopback: {e}"));
        assert_eq!(s.site(), host);
    }
}

#[test]
fn a_domain_must_match_the_base_url_host() {
    let s = load(
        &MINIMAL.replace("[jira]", "[jira]\ndomain = \"ACME.atlassian.net\""),
        &[],
    )
    .expect("valid");
    assert_eq!(s.site(), "acme.atlassian.net");
    let wrong = rejected(
        &MINIMAL.replace("[jira]", "[jira]\ndomain = \"other.atlassian.net\""),
        &[],
    );
    assert!(
        wrong.contains("jira.domain") && wrong.contains("acme.atlassian.net"),
        "{wrong}"
    );
}

#[test]
fn a_malformed_org_id_is_rejected_and_a_uuid_shaped_one_accepted() {
    let ok = MINIMAL.replace(
        "[jira]",
        "[jira]\norg_id = \"9A1B2C3D-4e5f-6a7b-8c9d-0e1f2a3b4c5d\"",
    );
    assert!(load(&ok, &[]).is_ok());
    for bad in [
        "acme",
        "https://admin.atlassian.net/o/9a1b2c3d",
        "9a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5",
        "9a1b2c3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d",
    ] {
        let err = rejected(
            &MINIMAL.replace("[jira]", &format!("[jira]\norg_id = \"{bad}\"")),
            &[],
        );
        assert!(err.contains("jira.org_id"), "{bad}: {err}");
    }
}

#[test]
fn numbers_out_of_range_are_rejected_naming_the_key() {
    let cases = [
        (
            "[database]\nmax_connections = 0",
            "database.max_connections",
        ),
        (
            "[database]\nmax_connections = 101",
            "database.max_connections",
        ),
        (
            "[rate_limit]\nrequests_per_second = 0.0",
            "rate_limit.requests_per_second",
        ),
        (
            "[rate_limit]\nrequests_per_second = 1001.0",
            "rate_limit.requests_per_second",
        ),
        (
            "[rate_limit]\nmax_in_flight = 65",
            "rate_limit.max_in_flight",
        ),
        ("[rate_limit]\nmax_retries = 21", "rate_limit.max_retries"),
        (
            "[rate_limit]\nbackoff_base_ms = 5000\nbackoff_max_ms = 1000",
            "rate_limit.backoff_max_ms",
        ),
        (
            "[sync]\nissues_interval_secs = 0",
            "sync.issues_interval_secs",
        ),
        (
            "[sync]\naudit_lookback_days = 0",
            "sync.audit_lookback_days",
        ),
    ];
    for (extra, key) in cases {
        let err = rejected(&with_jira(extra), &[]);
        assert!(
            err.contains(key) && err.contains("between")
                || err.contains(key) && err.contains("more than 0"),
            "{extra}: {err}"
        );
    }
}

#[test]
fn missing_credentials_are_named_and_bearer_needs_no_email() {
    let no_email = rejected(&MINIMAL.replace("ada@example.com", ""), &[]);
    assert!(no_email.contains("jira.email"), "{no_email}");
    let no_token = rejected(&MINIMAL.replace("file-token", ""), &[]);
    assert!(no_token.contains("jira.api_token"), "{no_token}");
    let no_url = rejected(&MINIMAL.replace("https://acme.atlassian.net", ""), &[]);
    assert!(
        no_url.contains("jira.base_url") && no_url.contains("not set"),
        "{no_url}"
    );
    let bearer = MINIMAL
        .replace("ada@example.com", "")
        .replace("[jira]", "[jira]\nauth = \"bearer\"");
    assert_eq!(
        load(&bearer, &[]).expect("bearer without email").jira.auth,
        AuthMode::Bearer
    );
}

#[test]
fn the_api_token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "  from-a-file\n").expect("write token");
    let toml = MINIMAL.replace(
        "api_token = \"file-token\"",
        &format!("api_token_file = {:?}", token_path.display().to_string()),
    );
    let s = load(&toml, &[]).expect("valid");
    assert_eq!(
        s.jira
            .token()
            .map(|t| t.expose_secret().to_owned())
            .as_deref(),
        Some("from-a-file")
    );
    let missing = toml.replace("token\"", "absent\"");
    let err = rejected(&missing, &[]);
    assert!(err.contains("jira.api_token_file"), "{err}");
    let both = toml.replace("[jira]", "[jira]\napi_token = \"x\"");
    assert!(rejected(&both, &[]).contains("both set"));
}

#[test]
fn unknown_keys_are_rejected_with_their_full_name() {
    let err = rejected(&MINIMAL.replace("[jira]", "[jira]\nemial = \"x\""), &[]);
    assert!(err.contains("jira.emial"), "{err}");
    let err = rejected(MINIMAL, &[("JIRA_SYNC__RATE_LIMIT__BRUST", "4")]);
    assert!(err.contains("rate_limit.brust"), "{err}");
    let err = rejected(&with_jira("[jria]\nx = 1"), &[]);
    assert!(err.contains("jria"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_config_error_naming_the_path() {
    let err = Settings::load_from(
        Some(Path::new("/nonexistent/jira-sync.toml")),
        HashMap::new(),
    );
    let text = err.expect_err("must fail").to_string();
    assert!(text.contains("/nonexistent/jira-sync.toml"), "{text}");
}

#[test]
fn secrets_stay_out_of_debug_output_and_error_messages() {
    let secret = "tok-SECRET-5b2f9e";
    let toml = MINIMAL.replace("file-token", secret)
        + "[database]\nurl = \"postgres://u:pw-SECRET-77aa@localhost/db\"\n";
    let s = load(&toml, &[]).expect("valid");
    let debug = format!("{s:?}");
    assert!(
        !debug.contains(secret) && !debug.contains("pw-SECRET-77aa"),
        "{debug}"
    );
    // A token pasted into a numeric key, and a broken line holding the token.
    let misplaced = rejected(
        &with_jira(&format!("[rate_limit]\nburst = \"{secret}\"")),
        &[],
    );
    assert!(
        misplaced.contains("rate_limit.burst") && !misplaced.contains(secret),
        "{misplaced}"
    );
    let broken = rejected(&MINIMAL.replace("\"file-token\"", secret), &[]);
    assert!(!broken.contains(secret), "{broken}");
    let bad_url = rejected(&toml.replace("postgres://u:", "::u:"), &[]);
    assert!(
        bad_url.contains("database.url") && !bad_url.contains("pw-SECRET-77aa"),
        "{bad_url}"
    );
}

#[tokio::test]
async fn a_typo_in_the_config_file_exits_2_naming_the_key() {
    let file = write_config(&MINIMAL.replace("[jira]", "[jira]\nemial = \"ada@example.com\""));
    let mut cmd = jira_sync();
    cmd.arg("--config").arg(&file.path).arg("check");
    let output = run(cmd).await;
    let (_, stderr) = expect_exit(&output, 2);
    assert!(stderr.contains("jira.emial"), "{stderr}");
}
