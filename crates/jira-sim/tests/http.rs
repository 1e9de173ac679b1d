//! Integration tests: the Jira Cloud simulator over real HTTP, checked against its own truth.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use jira_sim::time::{parse_jira_timestamp, parse_zone};
use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator, Storm};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

const UNBOUNDED: &str =
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.";

struct Site {
    sim: Simulator,
    http: Client,
}

impl Site {
    async fn start(config: SimConfig) -> Site {
        let sim = Simulator::start(config).await.expect("simulator starts");
        Site {
            sim,
            http: Client::new(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .basic_auth("demo@example.com", Some("demo-token"))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .request(Method::GET, path)
            .query(query)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A request without credentials (the control API, `/__sim/...`, takes none), with a JSON
    /// body if one is given.
    async fn anonymous(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let url = format!("{}{path}", self.sim.base_url());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    /// A request without credentials whose answer is JSON.
    async fn anonymous_json(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let response = self.anonymous(method, path, body).await;
        response.json().await.expect("json")
    }

    /// Follows `nextPageToken` to the end and returns every issue seen, in order.
    async fn search_all(&self, jql: &str, fields: &[&str], max: u32) -> Vec<Value> {
        let mut issues = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let mut body = json!({ "jql": jql, "fields": fields, "maxResults": max });
            if let Some(token) = &token {
                body["nextPageToken"] = json!(token);
            }
            let (status, page) = self.post("/rest/api/3/search/jql", body).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            issues.extend(page["issues"].as_array().expect("issues").iter().cloned());
            match page["nextPageToken"].as_str() {
                Some(next) => {
                    assert_eq!(page["isLast"], false);
                    token = Some(next.to_owned());
                }
                None => {
                    assert_eq!(page["isLast"], true);
                    return issues;
                }
            }
        }
        panic!("search never reached its last page");
    }
}

fn ids(issues: &[Value]) -> Vec<i64> {
    issues
        .iter()
        .map(|i| i["id"].as_str().expect("id").parse().expect("numeric id"))
        .collect()
}

fn unique(values: &[i64]) -> BTreeSet<i64> {
    let set: BTreeSet<i64> = values.iter().copied().collect();
    assert_eq!(
        set.len(),
        values.len(),
        "a record was returned more than once"
    );
    set
}

#[tokio::test]
async fn project_paging_returns_every_live_and_archived_project_exactly_once() {
    let site = Site::start(SimConfig::small()).await;
    let mut seen = Vec::new();
    let mut start = 0;
    loop {
        let start_text = start.to_string();
        let query = [
            ("startAt", start_text.as_str()),
            ("maxResults", "1"),
            ("status", "live"),
            ("status", "archived"),
        ];
        let (status, page) = site.get("/rest/api/3/project/search", &query).await;
        assert_eq!(status, StatusCode::OK);
        for project in page["values"].as_array().expect("values") {
            seen.push((
                project["id"]
                    .as_str()
                    .expect("id")
                    .parse::<i64>()
                    .expect("numeric"),
                project["archived"] == true,
            ));
        }
        if page["isLast"] == true {
            assert!(page.get("nextPage").is_none());
            break;
        }
        assert!(page["nextPage"].is_string());
        start += 1;
    }
    let truth = site.sim.truth();
    let mut want: Vec<(i64, bool)> = truth.projects.iter().map(|p| (p.id, p.archived)).collect();
    seen.sort_unstable();
    want.sort_unstable();
    assert_eq!(seen, want);
    assert_eq!(
        want.iter().filter(|p| p.1).count(),
        1,
        "one archived project"
    );

    let (_, live_only) = site
        .get("/rest/api/3/project/search", &[("maxResults", "500")])
        .await;
    assert_eq!(live_only["maxResults"], 100, "page size is capped at 100");
    assert_eq!(
        live_only["total"],
        truth.projects.len() - 1,
        "archived projects are not live"
    );
}

#[tokio::test]
async fn search_paging_with_small_pages_returns_every_issue_once_with_its_true_updated() {
    let site = Site::start(SimConfig::small()).await;
    let issues = site
        .search_all(
            "updated >= 0 ORDER BY updated ASC, key ASC",
            &["key", "updated"],
            7,
        )
        .await;
    let truth = site.sim.truth();
    let want: BTreeSet<i64> = truth.issues.iter().map(|i| i.id).collect();
    assert_eq!(unique(&ids(&issues)), want);
    let mut previous = None;
    for issue in &issues {
        let id: i64 = issue["id"].as_str().expect("id").parse().expect("numeric");
        let updated = parse_jira_timestamp(issue["fields"]["updated"].as_str().expect("updated"))
            .expect("timestamp");
        let truth_issue = truth.issues.iter().find(|t| t.id == id).expect("in truth");
        assert_eq!(updated, truth_issue.updated);
        assert_eq!(issue["key"], truth_issue.key.as_str());
        assert!(previous <= Some(updated), "ORDER BY updated ASC holds");
        previous = Some(updated);
    }
}

#[tokio::test]
async fn id_only_pages_hold_up_to_5000_issues_and_full_pages_100() {
    let site = Site::start(SimConfig {
        issues: 6_000,
        ..SimConfig::small()
    })
    .await;
    let body = json!({ "jql": "created >= 0", "maxResults": 5000 });
    let (_, first) = site.post("/rest/api/3/search/jql", body).await;
    assert_eq!(first["issues"].as_array().expect("issues").len(), 5000);
    assert_eq!(
        first["issues"][0],
        json!({ "id": first["issues"][0]["id"] }),
        "fields default to id only"
    );
    let issues = site.search_all("created >= 0", &["id"], 5000).await;
    let want: BTreeSet<i64> = site.sim.truth().issues.iter().map(|i| i.id).collect();
    assert_eq!(unique(&ids(&issues)), want);

    let full = json!({ "jql": "created >= 0", "maxResults": 5000, "fields": ["*all"] });
    let (_, page) = site.post("/rest/api/3/search/jql", full).await;
    assert_eq!(page["issues"].as_array().expect("issues").len(), 100);
    assert!(page["issues"][0]["fields"]["status"]["statusCategory"]["key"].is_string());
    assert!(page.get("total").is_none(), "search/jql has no total");
}

#[tokio::test]
async fn user_paging_until_an_empty_array_returns_every_user_once() {
    let site = Site::start(SimConfig::small()).await;
    let mut seen = Vec::new();
    loop {
        let start = seen.len().to_string();
        let (status, page) = site
            .get(
                "/rest/api/3/users/search",
                &[("startAt", start.as_str()), ("maxResults", "50")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let users = page.as_array().expect("a bare array");
        if users.is_empty() {
            break;
        }
        seen.extend(
            users
                .iter()
                .map(|u| u["accountId"].as_str().expect("accountId").to_owned()),
        );
    }
    assert_eq!(seen, site.sim.truth().users);
    let (_, page) = site
        .get("/rest/api/3/users", &[("maxResults", "5000")])
        .await;
    assert_eq!(
        page.as_array().expect("array").len(),
        seen.len(),
        "one page of up to 1000 holds all 130"
    );
    assert!(
        page.as_array()
            .expect("array")
            .iter()
            .any(|u| u.get("emailAddress").is_none()),
        "some emails are hidden"
    );
}

#[tokio::test]
async fn audit_offset_paging_stops_on_a_short_page_and_total_counts_the_whole_log() {
    let site = Site::start(SimConfig::small()).await;
    let mut seen = Vec::new();
    let mut previous_created = None;
    loop {
        let offset = seen.len().to_string();
        let (status, page) = site
            .get(
                "/rest/api/2/auditing/record",
                &[("offset", offset.as_str()), ("limit", "300")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["total"], 1100);
        let records = page["records"].as_array().expect("records");
        for record in records {
            let created = parse_jira_timestamp(record["created"].as_str().expect("created"));
            assert!(
                previous_created.is_none() || created <= previous_created,
                "newest first"
            );
            previous_created = created;
            seen.push(record["id"].as_i64().expect("int id"));
        }
        if records.len() < 300 {
            break;
        }
    }
    let want: BTreeSet<i64> = site.sim.truth().audit_ids.into_iter().collect();
    assert_eq!(unique(&seen), want);

    let (_, window) = site
        .get(
            "/rest/api/3/auditing/record",
            &[
                ("from", "2025-01-01T00:00:00.000Z"),
                ("to", "2025-01-31T23:59:59+0000"),
                ("limit", "0"),
            ],
        )
        .await;
    assert_eq!(window["limit"], 1000);
    assert_eq!(window["total"], 1100, "total ignores the time window");
    let inside = window["records"].as_array().expect("records").len();
    assert!(inside > 0 && inside < 1100, "{inside}");
}

/// Checks, for one user zone, that a wall-clock literal selects exactly the issues updated at
/// or after the instant it names, and that the epoch-millisecond literal agrees. Two instants
/// around a real issue make sure that reading the literal in UTC instead would select another
/// set, whichever side of UTC the zone lies.
async fn check_dates_in_zone(zone: &str) {
    let site = Site::start(SimConfig {
        user_time_zone: zone.to_owned(),
        ..SimConfig::small()
    })
    .await;
    let (_, me) = site.get("/rest/api/3/myself", &[]).await;
    assert_eq!(me["timeZone"], zone);
    let truth = site.sim.truth();
    let mut stamps: Vec<_> = truth.issues.iter().map(|i| i.updated).collect();
    stamps.sort_unstable();
    let median = stamps[stamps.len() / 2].timestamp();
    let floor =
        chrono::DateTime::from_timestamp(median - median.rem_euclid(60), 0).expect("instant");
    let tz = parse_zone(zone).expect("zone");
    let mut misread_somewhere = false;
    for instant in [floor, floor + chrono::Duration::minutes(1)] {
        let want: BTreeSet<i64> = truth
            .issues
            .iter()
            .filter(|i| i.updated >= instant)
            .map(|i| i.id)
            .collect();
        let literal = jql_datetime_literal(instant, tz);
        let by_wall_clock = site
            .search_all(&format!("updated >= \"{literal}\""), &["id"], 5000)
            .await;
        assert_eq!(unique(&ids(&by_wall_clock)), want, "{zone}: {literal}");
        let dashed = literal.replace('/', "-");
        let by_dashes = site
            .search_all(&format!("updated >= '{dashed}'"), &["id"], 5000)
            .await;
        assert_eq!(unique(&ids(&by_dashes)), want);
        let epoch = format!("updated >= {}", instant.timestamp_millis());
        assert_eq!(
            unique(&ids(&site.search_all(&epoch, &["id"], 5000).await)),
            want
        );

        let utc_literal = jql_datetime_literal(instant, chrono_tz::UTC);
        let misread = site
            .search_all(&format!("updated >= \"{utc_literal}\""), &["id"], 5000)
            .await;
        misread_somewhere |= unique(&ids(&misread)) != want;
    }
    assert!(
        misread_somewhere,
        "a UTC wall clock must name another instant in {zone}"
    );
}

#[tokio::test]
async fn jql_dates_are_read_in_the_users_time_zone() {
    check_dates_in_zone("Pacific/Kiritimati").await;
    check_dates_in_zone("America/Los_Angeles").await;
}

#[tokio::test]
async fn unbounded_jql_gets_400_with_jiras_exact_message() {
    let site = Site::start(SimConfig::small()).await;
    let exact = json!({ "errorMessages": [UNBOUNDED], "errors": {} });
    for jql in ["", "ORDER BY key DESC", "order by updated"] {
        let (status, body) = site
            .post("/rest/api/3/search/jql", json!({ "jql": jql }))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, exact.clone()),
            "{jql:?}"
        );
    }
    let (status, body) = site.get("/rest/api/3/search/jql", &[]).await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, exact.clone()));
    let (status, body) = site
        .post("/rest/api/3/search/approximate-count", json!({ "jql": "" }))
        .await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, exact));

    let (status, body) = site
        .post("/rest/api/3/search/jql", json!({ "jql": "project = NOPE" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errorMessages"][0],
        "The value 'NOPE' does not exist for the field 'project'."
    );
    let (status, _) = site
        .post(
            "/rest/api/3/search/jql",
            json!({ "jql": "project = OPS AND" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bad_token_gets_a_plain_text_401_and_server_info_stays_open() {
    let site = Site::start(SimConfig::small()).await;
    let url = format!("{}/rest/api/3/myself", site.sim.base_url());
    let response = site
        .http
        .get(&url)
        .basic_auth("demo@example.com", Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = response.headers().clone();
    assert_eq!(headers["x-seraph-loginreason"], "AUTHENTICATED_FAILED");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic realm=\"Jira\"")
    );
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert_eq!(
        response.text().await.expect("body"),
        "Client must be authenticated to access this resource."
    );

    let anonymous = site.http.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bearer = site
        .http
        .get(&url)
        .bearer_auth("demo-token")
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status(), StatusCode::OK);
    let info = site
        .anonymous(Method::GET, "/rest/api/3/serverInfo", None)
        .await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.expect("json");
    assert_eq!(info["deploymentType"], "Cloud");
    assert!(
        info["serverTime"]
            .as_str()
            .expect("serverTime")
            .ends_with("+0000")
    );
}

#[tokio::test]
async fn a_non_admin_gets_403_on_users_and_audit_until_made_admin() {
    let site = Site::start(SimConfig {
        admin: false,
        ..SimConfig::small()
    })
    .await;
    for path in [
        "/rest/api/3/users/search",
        "/rest/api/3/users",
        "/rest/api/3/auditing/record",
    ] {
        let (status, body) = site.get(path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body["errorMessages"][0].is_string());
    }
    let (_, perms) = site
        .get(
            "/rest/api/3/mypermissions",
            &[("permissions", "BROWSE_PROJECTS,ADMINISTER,USER_PICKER")],
        )
        .await;
    assert_eq!(perms["permissions"]["ADMINISTER"]["havePermission"], false);
    assert_eq!(perms["permissions"]["USER_PICKER"]["havePermission"], false);
    assert_eq!(
        perms["permissions"]["BROWSE_PROJECTS"]["havePermission"],
        true
    );
    assert_eq!(perms["permissions"]["ADMINISTER"]["type"], "GLOBAL");

    site.sim.set_admin(true);
    let (status, _) = site.get("/rest/api/3/auditing/record", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = site.get("/rest/api/3/mypermissions", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "permissions is required");
    let (status, _) = site
        .get("/rest/api/3/mypermissions", &[("permissions", "FLY")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown keys are rejected");
}

#[tokio::test]
async fn legacy_search_answers_410_and_unknown_paths_404() {
    let site = Site::start(SimConfig::small()).await;
    let (status, body) = site
        .get("/rest/api/3/search", &[("jql", "project = OPS")])
        .await;
    assert_eq!(status, StatusCode::GONE);
    let message = body["errorMessages"][0].as_str().expect("message");
    assert!(
        message.contains("CHANGE-2046") && message.contains("/rest/api/3/search/jql"),
        "{message}"
    );
    let (status, _) = site
        .post("/rest/api/2/search", json!({ "jql": "project = OPS" }))
        .await;
    assert_eq!(status, StatusCode::GONE);

    let (status, body) = site.get("/rest/api/3/no-such-thing", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["errorMessages"].is_array());
    let (status, body) = site.get("/rest/api/3/issue/NOPE-1", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["errorMessages"][0],
        "Issue does not exist or you do not have permission to see it."
    );
    let page = site.anonymous(Method::GET, "/browse/OPS-1", None).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.text()
            .await
            .expect("body")
            .starts_with("<!DOCTYPE html>")
    );
}

/// Sends the same 80 requests and describes each outcome: a status, "reset" or "truncated".
async fn fault_outcomes(plan: FaultPlan) -> (Vec<String>, Vec<u16>) {
    let site = Site::start(SimConfig::small()).await;
    site.sim.set_faults(plan);
    let mut outcomes = Vec::new();
    for _ in 0..80 {
        let outcome = match site.request(Method::GET, "/rest/api/3/myself").send().await {
            Err(_) => "reset".to_owned(),
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Err(_) => "reset".to_owned(),
                    Ok(body)
                        if status == StatusCode::OK
                            && serde_json::from_slice::<Value>(&body).is_err() =>
                    {
                        "truncated".to_owned()
                    }
                    Ok(_) => status.as_u16().to_string(),
                }
            }
        };
        outcomes.push(outcome);
    }
    let statuses = site.sim.request_log().iter().map(|e| e.status).collect();
    (outcomes, statuses)
}

#[tokio::test]
async fn faults_are_deterministic_for_a_seed() {
    let plan = FaultPlan {
        seed: 7,
        rate: 0.5,
        kinds: vec![
            FaultKind::Status(500),
            FaultKind::Status(503),
            FaultKind::TooManyRequests {
                retry_after_secs: Some(1),
            },
            FaultKind::Reset,
            FaultKind::Truncated,
            FaultKind::Unauthorized,
        ],
        ..FaultPlan::default()
    };
    let (first, first_log) = fault_outcomes(plan.clone()).await;
    let (second, second_log) = fault_outcomes(plan.clone()).await;
    assert_eq!(first, second);
    assert_eq!(first_log, second_log);
    for expected in ["200", "500", "503", "429", "reset", "truncated", "401"] {
        assert!(
            first.iter().any(|o| o == expected),
            "{expected} missing from {first:?}"
        );
    }
    let (other, _) = fault_outcomes(FaultPlan { seed: 8, ..plan }).await;
    assert_ne!(first, other, "another seed gives another sequence");
}

#[tokio::test]
async fn a_429_storm_answers_every_request_with_retry_after_until_it_ends() {
    let site = Site::start(SimConfig::small()).await;
    let until = SystemTime::now() + Duration::from_secs(600);
    site.sim.set_faults(FaultPlan {
        storm: Some(Storm {
            until,
            retry_after_secs: 7,
        }),
        ..FaultPlan::default()
    });
    for path in [
        "/rest/api/3/myself",
        "/rest/api/3/project/search",
        "/rest/api/3/serverInfo",
    ] {
        let response = site
            .request(Method::GET, path)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        let headers = response.headers();
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert!(
            headers.contains_key("x-ratelimit-reset") && headers.contains_key("ratelimit-reason")
        );
    }
    let control = site.anonymous(Method::GET, "/__sim/truth", None).await;
    assert_eq!(
        control.status(),
        StatusCode::OK,
        "the control API is never faulted"
    );
    site.sim.set_faults(FaultPlan::default());
    let (status, _) = site.get("/rest/api/3/myself", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(site.sim.request_count("/rest/api/3/myself"), 2);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_headers_beyond_the_burst() {
    let site = Site::start(SimConfig::small()).await;
    site.sim.set_faults(FaultPlan {
        rate_limit_rps: Some(2.0),
        ..FaultPlan::default()
    });
    let mut limited = 0;
    for _ in 0..10 {
        let response = site
            .request(Method::GET, "/rest/api/3/myself")
            .send()
            .await
            .expect("request");
        let headers = response.headers();
        assert_eq!(headers["x-ratelimit-limit"], "2");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            let wait: u64 = headers["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!(wait >= 1);
            assert_eq!(headers["ratelimit-reason"], "jira-burst-based");
        }
    }
    assert!(
        limited >= 5,
        "only {limited} of 10 rapid requests were limited"
    );
}

#[tokio::test]
async fn mutations_show_up_in_truth_search_and_bulkfetch() {
    let site = Site::start(SimConfig::small()).await;
    let created = site.sim.create_issue("WEB").expect("create");
    assert!(site.sim.truth().issues.contains(&created));
    let found = site
        .search_all(&format!("key = {}", created.key), &["key", "updated"], 50)
        .await;
    assert_eq!(ids(&found), vec![created.id]);

    let updated = site.sim.update_issue(created.id).expect("update");
    assert!(updated.updated >= created.updated);
    let since = format!("updated >= {}", updated.updated.timestamp_millis());
    assert!(ids(&site.search_all(&since, &["id"], 5000).await).contains(&created.id));

    let moved = site.sim.move_issue(created.id, "OPS").expect("move");
    assert_eq!(moved.id, created.id);
    assert!(moved.key.starts_with("OPS-") && moved.key != created.key);
    let (_, by_old_key) = site
        .get(
            &format!("/rest/api/3/issue/{}", created.key),
            &[("fields", "project")],
        )
        .await;
    assert_eq!(by_old_key["key"], moved.key.as_str());
    let body =
        json!({ "issueIdsOrKeys": [created.key, "10005", "10003", "NOPE-9"], "fields": ["key"] });
    let (_, bulk) = site.post("/rest/api/3/issue/bulkfetch", body).await;
    assert_eq!(
        ids(bulk["issues"].as_array().expect("issues")),
        vec![10003, 10005, created.id],
        "ascending ids"
    );
    assert_eq!(bulk["issues"][2]["key"], moved.key.as_str());
    let found = site
        .search_all(
            &format!("project = OPS AND id = {}", created.id),
            &["key"],
            50,
        )
        .await;
    assert_eq!(found[0]["key"], moved.key.as_str());

    site.sim.delete_issue(created.id).expect("delete");
    assert!(!site.sim.truth().issues.iter().any(|i| i.id == created.id));
    assert!(
        site.search_all(&format!("id = {}", created.id), &["id"], 50)
            .await
            .is_empty()
    );
    let (status, _) = site
        .get(&format!("/rest/api/3/issue/{}", created.id), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, bulk) = site
        .post(
            "/rest/api/3/issue/bulkfetch",
            json!({ "issueIdsOrKeys": [created.id.to_string()] }),
        )
        .await;
    assert_eq!(bulk["issues"], json!([]));
    let too_many: Vec<String> = (10_001..10_102).map(|i| i.to_string()).collect();
    let (status, _) = site
        .post(
            "/rest/api/3/issue/bulkfetch",
            json!({ "issueIdsOrKeys": too_many }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pages_served_from_rendered_issues_equal_fresh_renders_and_never_outlive_a_change() {
    let site = Site::start(SimConfig::small()).await;
    let jql = "project = OPS ORDER BY updated ASC, key ASC";
    let first = site.search_all(jql, &["*all"], 100).await;
    // Served again from what the first search rendered: the same documents.
    assert_eq!(site.search_all(jql, &["*all"], 100).await, first);
    // Rendered anew: still the same documents.
    site.sim.forget_rendered();
    assert_eq!(site.search_all(jql, &["*all"], 100).await, first);
    // Another selection of the same issues is rendered for it, not taken from the first.
    let keys = site.search_all(jql, &["key"], 100).await;
    assert_eq!(ids(&keys), ids(&first));
    assert!(keys.iter().all(|i| i["fields"].get("summary").is_none()));
    // A change shows at once: nothing rendered before it is served after it.
    let id = ids(&first)[0];
    let changed = site.sim.update_issue(id).expect("update");
    let moved = site.sim.move_issue(ids(&first)[1], "WEB").expect("move");
    let after = site.search_all(jql, &["*all"], 100).await;
    let now = after
        .iter()
        .find(|i| i["id"] == id.to_string().as_str())
        .expect("the changed issue");
    assert_eq!(
        parse_jira_timestamp(now["fields"]["updated"].as_str().expect("updated")),
        Some(changed.updated)
    );
    assert!(!ids(&after).contains(&moved.id), "the moved issue left OPS");
    assert_eq!(after.len(), first.len() - 1);
}

#[tokio::test]
async fn an_issue_updated_while_paging_moves_to_the_end() {
    let site = Site::start(SimConfig::small()).await;
    let jql = "project = OPS ORDER BY updated ASC, key ASC";
    let (_, first) = site
        .post(
            "/rest/api/3/search/jql",
            json!({ "jql": jql, "maxResults": 10 }),
        )
        .await;
    let early = ids(first["issues"].as_array().expect("issues"))[0];
    site.sim.update_issue(early).expect("update");
    let mut token = first["nextPageToken"].as_str().map(str::to_owned);
    let mut rest = Vec::new();
    while let Some(next) = token {
        let body = json!({ "jql": jql, "maxResults": 10, "nextPageToken": next });
        let (_, page) = site.post("/rest/api/3/search/jql", body).await;
        rest.extend(ids(page["issues"].as_array().expect("issues")));
        token = page["nextPageToken"].as_str().map(str::to_owned);
    }
    assert_eq!(
        rest.last(),
        Some(&early),
        "the updated issue is seen again at the end"
    );

    let other = json!({ "jql": "project = WEB", "nextPageToken": first["nextPageToken"] });
    let (status, _) = site.post("/rest/api/3/search/jql", other).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a token from another query is rejected"
    );
}

#[tokio::test]
async fn search_lag_hides_mutations_until_it_passes_unless_reconciled() {
    let site = Site::start(SimConfig {
        search_lag_ms: 1_500,
        ..SimConfig::small()
    })
    .await;
    let created = site.sim.create_issue("OPS").expect("create");
    let jql = format!("key = {}", created.key);
    assert!(
        site.search_all(&jql, &["id"], 50).await.is_empty(),
        "not yet indexed"
    );
    let body = json!({ "jql": jql, "reconcileIssues": [created.id] });
    let (_, reconciled) = site.post("/rest/api/3/search/jql", body).await;
    assert_eq!(
        ids(reconciled["issues"].as_array().expect("issues")),
        vec![created.id]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while site.search_all(&jql, &["id"], 50).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the issue never became searchable"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_same_seed_serves_byte_identical_responses() {
    let bodies = |site: &Site| {
        let base = site.sim.base_url();
        let requests = [
            site.request(Method::POST, "/rest/api/3/search/jql")
                .json(&json!({ "jql": "project = OPS ORDER BY key", "fields": ["*all"], "maxResults": 30 })),
            site.request(Method::GET, "/rest/api/3/users/search?maxResults=200"),
            site.request(Method::GET, "/rest/api/3/project/search?expand=lead,insight,description&status=live,archived"),
            site.request(Method::GET, "/rest/api/3/auditing/record?limit=50"),
            site.request(Method::GET, "/rest/api/3/issue/OPS-3?expand=names,schema"),
        ];
        async move {
            let mut out = Vec::new();
            for request in requests {
                let text = request
                    .send()
                    .await
                    .expect("request")
                    .text()
                    .await
                    .expect("body");
                out.push(text.replace(&base, "BASE"));
            }
            out
        }
    };
    let (a, b) = (
        Site::start(SimConfig::small()).await,
        Site::start(SimConfig::small()).await,
    );
    let c = Site::start(SimConfig {
        seed: 43,
        ..SimConfig::small()
    })
    .await;
    let (first, second, third) = (bodies(&a).await, bodies(&b).await, bodies(&c).await);
    assert_eq!(first, second);
    assert_ne!(first, third);
}

#[tokio::test]
async fn timestamps_render_in_the_site_zone() {
    let config = SimConfig {
        site_time_zone: "Australia/Brisbane".to_owned(),
        ..SimConfig::small()
    };
    let site = Site::start(config).await;
    let issues = site
        .search_all("project = OPS", &["key", "updated"], 100)
        .await;
    let truth = site.sim.truth();
    for issue in issues.iter().take(20) {
        let text = issue["fields"]["updated"].as_str().expect("updated");
        assert!(text.ends_with("+1000"), "{text}");
        let id: i64 = issue["id"].as_str().expect("id").parse().expect("numeric");
        let want = truth
            .issues
            .iter()
            .find(|t| t.id == id)
            .expect("in truth")
            .updated;
        assert_eq!(parse_jira_timestamp(text), Some(want));
    }
}

#[tokio::test]
async fn the_control_api_mutates_counts_and_sets_faults() {
    let site = Site::start(SimConfig::small()).await;
    let created: Value = site
        .anonymous_json(
            Method::POST,
            "/__sim/issues",
            Some(json!({ "project_key": "OPS" })),
        )
        .await;
    let id = created["id"].as_i64().expect("id");
    let moved: Value = site
        .anonymous_json(
            Method::POST,
            &format!("/__sim/issues/{id}/move"),
            Some(json!({ "to_project_key": "WEB" })),
        )
        .await;
    assert!(moved["key"].as_str().expect("key").starts_with("WEB-"));
    let deleted = site
        .anonymous(Method::DELETE, &format!("/__sim/issues/{id}"), None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let user: Value = site
        .anonymous_json(Method::POST, "/__sim/users", None)
        .await;
    let audit: Value = site
        .anonymous_json(Method::POST, "/__sim/audit", None)
        .await;
    let truth: Value = site.anonymous_json(Method::GET, "/__sim/truth", None).await;
    assert_eq!(
        truth["users"].as_array().expect("users").last(),
        Some(&user["accountId"])
    );
    assert_eq!(
        truth["audit_ids"].as_array().expect("ids").last(),
        Some(&audit["id"])
    );
    let (_, newest) = site
        .get("/rest/api/3/auditing/record", &[("limit", "1")])
        .await;
    assert_eq!(
        newest["records"][0]["id"], audit["id"],
        "new audit records come first"
    );

    let plan = json!({ "script": ["Unauthorized", { "Status": 502 }] });
    let set = site
        .anonymous(Method::PUT, "/__sim/faults", Some(plan))
        .await;
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        site.get("/rest/api/3/myself", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        site.get("/rest/api/3/myself", &[]).await.0,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(site.get("/rest/api/3/myself", &[]).await.0, StatusCode::OK);
    let admin = site
        .anonymous(Method::PUT, "/__sim/admin", Some(json!({ "admin": false })))
        .await;
    assert_eq!(admin.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        site.get("/rest/api/3/users/search", &[]).await.0,
        StatusCode::FORBIDDEN
    );

    let counts: Value = site
        .anonymous_json(Method::GET, "/__sim/requests", None)
        .await;
    assert_eq!(counts["total"], 5);
    assert_eq!(counts["endpoints"]["GET /rest/api/3/myself"], 3);
    assert_eq!(site.sim.request_count("/rest/api/3/"), 5);
}

async fn data_center_site() -> Site {
    Site::start(SimConfig {
        data_center: true,
        ..SimConfig::small()
    })
    .await
}

#[tokio::test]
async fn data_center_lists_projects_in_one_array_with_archived_ones_on_request() {
    let site = data_center_site().await;
    let truth = site.sim.truth();
    let (status, live) = site.get("/rest/api/2/project", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let live = live.as_array().expect("a plain array").clone();
    assert_eq!(
        live.len(),
        truth.projects.iter().filter(|p| !p.archived).count()
    );
    let (_, all) = site
        .get(
            "/rest/api/2/project",
            &[("includeArchived", "true"), ("expand", "lead,description")],
        )
        .await;
    let all = all.as_array().expect("a plain array").clone();
    let mut ids: Vec<i64> = all
        .iter()
        .map(|p| {
            p["id"]
                .as_str()
                .expect("string id")
                .parse()
                .expect("numeric")
        })
        .collect();
    ids.sort();
    assert_eq!(ids, truth.projects.iter().map(|p| p.id).collect::<Vec<_>>());
    for project in &all {
        assert!(project["archived"].is_boolean(), "{project}");
        assert!(project.get("style").is_none() && project.get("isPrivate").is_none());
        let lead = &project["lead"];
        assert!(
            lead["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("JIRAUSER")),
            "{lead}"
        );
        assert!(
            lead["name"].is_string() && lead.get("accountId").is_none(),
            "{lead}"
        );
    }
}

#[tokio::test]
async fn data_center_user_search_needs_a_username_and_leaves_inactive_users_out_by_default() {
    let site = data_center_site().await;
    let truth = site.sim.truth();
    let (status, _) = site.get("/rest/api/2/user/search", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Every user, in pages, with inactive ones included.
    let mut keys = Vec::new();
    let mut start = 0;
    loop {
        let start_text = start.to_string();
        let (status, page) = site
            .get(
                "/rest/api/2/user/search",
                &[
                    ("username", "."),
                    ("includeInactive", "true"),
                    ("startAt", &start_text),
                    ("maxResults", "50"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page = page.as_array().expect("a bare array").clone();
        if page.is_empty() {
            break;
        }
        for user in &page {
            assert!(user.get("accountId").is_none() && user.get("accountType").is_none());
            assert!(
                user["name"].is_string() && user["deleted"] == false,
                "{user}"
            );
            keys.push(user["key"].as_str().expect("key").to_owned());
        }
        start += page.len();
    }
    assert_eq!(keys, truth.users);
    let (_, active) = site
        .get(
            "/rest/api/2/user/search",
            &[("username", "."), ("maxResults", "1000")],
        )
        .await;
    let active = active.as_array().expect("array");
    assert!(!active.is_empty() && active.len() < truth.users.len());
    assert!(active.iter().all(|u| u["active"] == true));
    // A prefix of a username finds that user.
    let name = active[0]["name"].as_str().expect("name").to_owned();
    let (_, found) = site
        .get("/rest/api/2/user/search", &[("username", &name)])
        .await;
    assert!(
        found
            .as_array()
            .expect("array")
            .iter()
            .any(|u| u["name"] == name.as_str())
    );
}

#[tokio::test]
async fn data_center_answers_404_to_cloud_only_endpoints() {
    let site = data_center_site().await;
    for path in [
        "/rest/api/3/myself",
        "/rest/api/2/project/search",
        "/rest/api/2/users/search",
        "/rest/api/2/search/jql",
        "/_edge/tenant_info",
    ] {
        let (status, _) = site.get(path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = site
        .post(
            "/rest/api/2/issue/bulkfetch",
            json!({"issueIdsOrKeys": ["1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, me) = site.get("/rest/api/2/myself", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        me.get("accountId").is_none() && me["key"] == "JIRAUSER10000",
        "{me}"
    );
}

#[tokio::test]
async fn data_center_search_refuses_a_missing_issue_unless_validation_is_off() {
    let site = data_center_site().await;
    let truth = site.sim.truth();
    let (kept, gone) = (truth.issues[0].id, truth.issues[1].id);
    site.sim.delete_issue(gone).expect("delete");
    let jql = format!("id in ({kept}, {gone})");
    let (status, body) = site
        .post("/rest/api/2/search", json!({"jql": jql, "fields": ["id"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = site
        .post(
            "/rest/api/2/search",
            json!({"jql": jql, "fields": ["id"], "validateQuery": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issues"], json!([{"id": kept.to_string()}]), "{body}");
    let (status, _) = site.get(&format!("/rest/api/2/issue/{gone}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = site.get(&format!("/rest/api/2/issue/{kept}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

/// Whether a user object is in Data Center's shape: `key` and `name`, no Cloud ids.
fn is_data_center_user(user: &Value) -> bool {
    user["key"]
        .as_str()
        .is_some_and(|k| k.starts_with("JIRAUSER"))
        && user["name"].is_string()
        && user.get("accountId").is_none()
        && user.get("accountType").is_none()
}

#[tokio::test]
async fn data_center_issues_and_audit_records_name_users_by_key_and_name() {
    let site = data_center_site().await;
    let truth = site.sim.truth();
    let people = site.sim.issue_users();
    let fields = [
        "assignee",
        "reporter",
        "creator",
        "customfield_10018",
        "customfield_10019",
    ];
    let keys: Vec<&str> = truth.projects.iter().map(|p| p.key.as_str()).collect();
    let jql = format!("project in ({}) order by id", keys.join(", "));
    let mut issues = Vec::new();
    loop {
        let (status, body) = site
            .post(
                "/rest/api/2/search",
                json!({"jql": jql, "fields": fields, "startAt": issues.len()}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["issues"].as_array().expect("issues").clone();
        if page.is_empty() {
            break;
        }
        issues.extend(page);
    }
    assert_eq!(issues.len(), truth.issues.len());
    let mut users_seen = 0;
    for (issue, want) in issues.iter().zip(&people) {
        assert_eq!(issue["id"], want.id.to_string());
        let f = &issue["fields"];
        assert_eq!(f["reporter"]["key"], want.reporter.as_str(), "{issue}");
        assert_eq!(f["creator"]["key"], want.creator.as_str(), "{issue}");
        assert_eq!(f["assignee"]["key"].as_str(), want.assignee.as_deref());
        let mut users: Vec<&Value> = vec![&f["reporter"], &f["creator"]];
        users.extend(
            [&f["assignee"], &f["customfield_10018"]]
                .into_iter()
                .filter(|u| !u.is_null()),
        );
        users.extend(f["customfield_10019"].as_array().into_iter().flatten());
        for user in users {
            assert!(is_data_center_user(user), "{user}");
            users_seen += 1;
        }
    }
    assert!(users_seen > 2 * issues.len(), "user fields were rendered");
    assert!(people.iter().any(|p| p.assignee.is_some()));

    let (status, audit) = site
        .get("/rest/api/2/auditing/record", &[("limit", "100")])
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let records = audit["records"].as_array().expect("records");
    assert!(!records.is_empty());
    for record in records {
        assert!(record.get("authorAccountId").is_none(), "{record}");
        assert!(
            truth
                .users
                .iter()
                .any(|k| record["authorKey"] == k.as_str()),
            "{record}"
        );
    }
}

#[tokio::test]
async fn a_jira_10_window_caps_every_user_search_at_its_first_matches() {
    let site = Site::start(SimConfig {
        data_center: true,
        dc_user_window: Some(100),
        users: 350,
        ..SimConfig::small()
    })
    .await;
    let search = |username: &'static str, start: usize, max: usize| {
        let site = &site;
        async move {
            let (start, max) = (start.to_string(), max.to_string());
            let (status, page) = site
                .get(
                    "/rest/api/2/user/search",
                    &[
                        ("username", username),
                        ("includeInactive", "true"),
                        ("startAt", &start),
                        ("maxResults", &max),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page.as_array().expect("a bare array").clone()
        }
    };
    assert_eq!(search(".", 0, 200).await.len(), 100);
    assert_eq!(search(".", 98, 20).await.len(), 2);
    assert!(search(".", 100, 200).await.is_empty());
    // A narrower search still matches on name, e-mail and display-name words, under the cap.
    let a = search("a", 0, 200).await;
    assert!(!a.is_empty() && a.len() < 100, "{}", a.len());
    let matches_a = |u: &Value| {
        ["name", "emailAddress"].iter().any(|f| {
            u[f].as_str()
                .is_some_and(|s| s.to_lowercase().starts_with('a'))
        }) || u["displayName"]
            .as_str()
            .is_some_and(|d| d.split(' ').any(|w| w.to_lowercase().starts_with('a')))
    };
    assert!(a.iter().all(matches_a));

    // One user by username, exactly and ignoring case; 404 for none.
    let name = a[0]["name"].as_str().expect("name").to_owned();
    let (status, user) = site
        .get("/rest/api/2/user", &[("username", &name.to_uppercase())])
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["key"], a[0]["key"]);
    let (status, _) = site
        .get(
            "/rest/api/2/user",
            &[("username", &format!("{name}-nobody"))],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A JQL date-time literal (`2025/03/04 19:15`): `instant`'s wall-clock time in `zone`, to the
/// minute, as a client writes it.
fn jql_datetime_literal(instant: chrono::DateTime<chrono::Utc>, zone: chrono_tz::Tz) -> String {
    instant
        .with_timezone(&zone)
        .format("%Y/%m/%d %H:%M")
        .to_string()
}
