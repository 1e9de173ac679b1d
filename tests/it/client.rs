//! Tests of the client against the simulator: retries, pauses, the 401 hold, pressure.

use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator};
use jira_sync::jira::model::Myself;
use jira_sync::jira::{JiraClient, JiraError};
use jira_sync::settings::{RateLimitSettings, Settings};
use secrecy::SecretString;
use std::time::{Duration, Instant};
use url::Url;

/// A simulator and a client for it with millisecond backoff, so retries are quick.
async fn client_for(max_retries: u32) -> (Simulator, JiraClient) {
    client_with(|limits| {
        limits.backoff_base_ms = 1;
        limits.backoff_max_ms = 5;
        limits.max_retries = max_retries;
    })
    .await
}

/// A simulator and a client for it, its `[rate_limit]` settings changed by `tune`.
async fn client_with(tune: impl FnOnce(&mut RateLimitSettings)) -> (Simulator, JiraClient) {
    let config = SimConfig::small();
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let url = Url::parse(&sim.base_url()).expect("simulator URL");
    let token = SecretString::from(config.api_token.clone());
    let mut settings = Settings::for_site(&url, &config.email, token).expect("settings");
    tune(&mut settings.rate_limit);
    let client = JiraClient::new(&settings.jira, &settings.rate_limit).expect("client");
    (sim, client)
}

fn script(sim: &Simulator, faults: Vec<FaultKind>) {
    sim.set_faults(FaultPlan {
        script: faults,
        ..Default::default()
    });
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_real_answer_arrives() {
    let (sim, client) = client_for(5).await;
    script(
        &sim,
        vec![
            FaultKind::Status(503),
            FaultKind::Reset,
            FaultKind::Truncated,
            FaultKind::Status(502),
        ],
    );
    let me: Myself = client
        .get("/rest/api/3/myself", &[])
        .await
        .expect("fifth attempt succeeds");
    assert!(!me.account_id.is_empty());
    let m = client.metrics();
    assert_eq!((m.requests, m.retries), (5, 4), "{m:?}");
    assert_eq!(
        m.statuses.get(&200),
        Some(&2),
        "the truncated 200 and the real one: {m:?}"
    );
}

#[tokio::test]
async fn retries_stop_at_max_retries_with_the_last_error() {
    let (sim, client) = client_for(2).await;
    script(&sim, vec![FaultKind::Status(500); 5]);
    let err = client
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("still failing");
    assert!(
        matches!(err, JiraError::Server { status: 500, .. }),
        "{err}"
    );
    assert_eq!(client.metrics().requests, 3);
}

#[tokio::test]
async fn permanent_failures_are_returned_on_the_first_response() {
    let (sim, client) = client_for(5).await;
    // An array where an object is expected is valid JSON of the wrong shape.
    let err = client
        .get::<Myself>("/rest/api/3/users/search", &[])
        .await
        .expect_err("shape");
    assert!(matches!(err, JiraError::Decode { .. }), "{err}");
    script(&sim, vec![FaultKind::Unauthorized]);
    let err = client
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("401");
    assert!(matches!(err, JiraError::Unauthorized { .. }), "{err}");
    assert_eq!(client.metrics().requests, 2);
    assert_eq!(sim.request_log().len(), 2);
}

#[tokio::test]
async fn a_body_left_undecoded_is_still_checked_and_a_truncated_one_retried() {
    let (sim, client) = client_for(3).await;
    script(&sim, vec![FaultKind::Truncated]);
    let query = serde_json::json!({ "jql": "project = 10000", "maxResults": 2 });
    let body = client
        .post_body("/rest/api/3/search/jql", &query)
        .await
        .expect("the retry gets a whole body");
    assert_eq!(client.metrics().retries, 1);
    let page: jira_sync::jira::model::SearchPage = body.decode().expect("a search page");
    assert_eq!(page.issues.len(), 2);
    let err = body.decode::<Myself>().expect_err("not a profile");
    assert!(matches!(err, JiraError::Decode { .. }), "{err}");
}

#[tokio::test]
async fn after_a_401_no_clone_sends_anything_for_a_while() {
    let (sim, client) = client_for(5).await;
    script(&sim, vec![FaultKind::Unauthorized]);
    let err = client
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("401");
    assert!(matches!(err, JiraError::Unauthorized { .. }), "{err}");
    // The simulator would answer this one: the client must not even ask.
    let err = client
        .clone()
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("refused");
    assert!(matches!(err, JiraError::Unauthorized { .. }), "{err}");
    assert_eq!(sim.request_log().len(), 1);
}

#[tokio::test]
async fn requests_refused_together_ask_myself_once_whether_the_credentials_are_dead() {
    let (sim, client) = client_for(0).await;
    script(&sim, vec![FaultKind::Revoke]);
    let paths = [
        "/rest/api/3/field",
        "/rest/api/3/status",
        "/rest/api/3/issuetype",
        "/rest/api/3/projectCategory",
    ];
    let results = futures::future::join_all(
        paths
            .iter()
            .map(|path| client.get::<serde_json::Value>(path, &[])),
    )
    .await;
    for result in results {
        let err = result.expect_err("the token is revoked");
        assert!(matches!(err, JiraError::Unauthorized { .. }), "{err}");
    }
    let log = sim.request_log();
    let probes = log.iter().filter(|r| r.path.ends_with("/myself")).count();
    assert_eq!(probes, 1, "{log:?}");
    assert!(log.iter().all(|r| r.status == 401), "{log:?}");
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_with_backoff_and_pauses_nobody() {
    let (sim, client) = client_for(3).await;
    script(
        &sim,
        vec![FaultKind::TooManyRequests {
            retry_after_secs: None,
        }],
    );
    let _: Myself = client
        .get("/rest/api/3/myself", &[])
        .await
        .expect("the retry succeeds");
    let m = client.metrics();
    assert_eq!((m.requests, m.retries, m.throttled, m.pauses), (2, 1, 1, 0));
    assert_eq!(m.retry_after_wait_ms, 0);
    assert_eq!(m.endpoints["GET /rest/api/3/myself"]["429"], 1);
}

#[tokio::test]
async fn the_client_never_bursts_beyond_what_the_sites_bucket_says_remains() {
    // The site's rate, and a burst twice its bucket of 5.
    let (sim, client) = client_with(|limits| {
        limits.requests_per_second = 5.0;
        limits.burst = 10;
    })
    .await;
    sim.set_faults(FaultPlan {
        rate_limit_rps: Some(5.0),
        ..Default::default()
    });
    let started = Instant::now();
    for _ in 0..10 {
        let _: Myself = client.get("/rest/api/3/myself", &[]).await.expect("ok");
    }
    // The bucket's 5 tokens (less a token kept back) go at once, the rest at 5 a second: no
    // request finds the bucket empty, and a low remaining does not cut the pace.
    assert_eq!(client.metrics().throttled, 0);
    assert!(sim.request_log().iter().all(|e| e.status == 200));
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.pace_share(), 1.0);
}

#[tokio::test]
async fn a_retry_after_pauses_every_clone_of_the_client() {
    let (sim, client) = client_for(0).await;
    script(
        &sim,
        vec![FaultKind::TooManyRequests {
            retry_after_secs: Some(1),
        }],
    );
    let err = client
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    let other = client.clone();
    let started = Instant::now();
    let _: Myself = other
        .get("/rest/api/3/myself", &[])
        .await
        .expect("after the pause");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let m = client.metrics();
    assert!(m.retry_after_wait_ms >= 900 && m.throttled == 1, "{m:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_bound_fails_at_once_as_rate_limited() {
    let (sim, client) = client_for(5).await;
    script(
        &sim,
        vec![FaultKind::TooManyRequests {
            retry_after_secs: Some(3600),
        }],
    );
    let started = Instant::now();
    let err = client
        .get::<Myself>("/rest/api/3/myself", &[])
        .await
        .expect_err("429");
    assert!(
        matches!(err, JiraError::RateLimited { .. })
            && jira_sync::commands::exit::code(err.failure()) == 6,
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.metrics().requests, 1);
}

/// A gzip stream holding `data` in one stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let crc = data.iter().fold(0xFFFF_FFFF_u32, |mut crc, byte| {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
        crc
    }) ^ 0xFFFF_FFFF;
    let len = u16::try_from(data.len()).expect("one stored block");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[tokio::test]
async fn responses_are_asked_for_and_read_gzip_compressed() {
    use axum::http::HeaderMap as AxumHeaders;
    let app = axum::Router::new().fallback(|headers: AxumHeaders| async move {
        let asked = headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = serde_json::json!({ "accountId": "a-1", "acceptEncoding": asked });
        (
            [
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            gzip_stored(body.to_string().as_bytes()),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = Url::parse(&url).expect("url");
    let settings = Settings::for_site(&url, "me@example.com", SecretString::from("t".to_owned()))
        .expect("settings");
    let client = JiraClient::new(&settings.jira, &settings.rate_limit).expect("client");
    let answer: serde_json::Value = client
        .get("/rest/api/3/myself", &[])
        .await
        .expect("a gzip body is decoded");
    assert_eq!(answer["accountId"], "a-1");
    let asked = answer["acceptEncoding"].as_str().unwrap_or_default();
    assert!(asked.contains("gzip"), "{asked}");
}
