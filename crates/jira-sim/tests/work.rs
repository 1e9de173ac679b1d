//! The work on issues over real HTTP: change histories, comments, worklogs and links, as Jira
//! Cloud serves them (embedded lists truncated, bulk changelogs paged by history, worklog feeds
//! that leave out the last minute), checked against the simulator's own truth.

use std::collections::{BTreeMap, BTreeSet};

use jira_sim::time::parse_jira_timestamp;
use jira_sim::{SimConfig, Simulator};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

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

    async fn get(&self, path: &str, query: &[(&str, String)]) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.sim.base_url()))
            .basic_auth("demo@example.com", Some("demo-token"))
            .query(query)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .basic_auth("demo@example.com", Some("demo-token"))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The first live issue for which `pick` holds of its (histories, comments, worklogs).
    fn issue_with(&self, pick: impl Fn((usize, usize, usize)) -> bool) -> i64 {
        self.sim
            .truth()
            .issues
            .iter()
            .map(|i| i.id)
            .find(|&id| pick(self.sim.work_counts(id)))
            .expect("an issue of that kind")
    }
}

fn id_of(value: &Value) -> i64 {
    match &value["id"] {
        Value::String(s) => s.parse().expect("numeric id"),
        other => other.as_i64().expect("numeric id"),
    }
}

#[tokio::test]
async fn embedded_lists_stop_at_twenty_and_the_endpoints_page_through_every_item() {
    let site = Site::start(SimConfig::small()).await;
    let id = site.issue_with(|(_, comments, _)| comments > 20);
    let (status, issue) = site
        .get(
            &format!("/rest/api/3/issue/{id}"),
            &[("fields", "comment,worklog".to_owned())],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let embedded = &issue["fields"]["comment"];
    assert_eq!(embedded["comments"].as_array().map(Vec::len), Some(20));
    let total = embedded["total"].as_u64().expect("total") as usize;
    assert_eq!(total, site.sim.comment_ids(id).len());
    let mut paged = Vec::new();
    let mut start = 0;
    loop {
        let (_, page) = site
            .get(
                &format!("/rest/api/3/issue/{id}/comment"),
                &[
                    ("startAt", start.to_string()),
                    ("maxResults", "7".to_owned()),
                ],
            )
            .await;
        let comments = page["comments"].as_array().expect("comments").clone();
        if comments.is_empty() {
            break;
        }
        start += comments.len();
        paged.extend(comments.iter().map(id_of));
    }
    assert_eq!(paged, site.sim.comment_ids(id));
    let (status, _) = site
        .get(
            &format!("/rest/api/3/issue/{id}/comment"),
            &[("orderBy", "updated".to_owned())],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // More worklogs than an issue embeds: logged now, on an issue of the site.
    let id = site.sim.truth().issues[3].id;
    while site.sim.work_counts(id).2 <= 20 {
        site.sim.add_worklog(id).expect("log work");
    }
    let (_, issue) = site
        .get(
            &format!("/rest/api/3/issue/{id}"),
            &[("fields", "worklog".to_owned())],
        )
        .await;
    assert_eq!(
        issue["fields"]["worklog"]["worklogs"]
            .as_array()
            .map(Vec::len),
        Some(20)
    );
    let (_, page) = site
        .get(&format!("/rest/api/3/issue/{id}/worklog"), &[])
        .await;
    let all: Vec<i64> = page["worklogs"]
        .as_array()
        .expect("worklogs")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(all, site.sim.worklog_ids(id));
}

/// Pages of `changelog/bulkfetch` for `ids`, merged by issue.
async fn bulk_histories(site: &Site, ids: &[i64], max: usize) -> BTreeMap<i64, Vec<Value>> {
    let mut merged: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let mut token: Option<String> = None;
    // Pages follow each other in order of creation.
    let mut previous_page_latest = i64::MIN;
    loop {
        let mut body = json!({"issueIdsOrKeys": ids, "maxResults": max});
        if let Some(t) = &token {
            body["nextPageToken"] = json!(t);
        }
        let (status, page) = site.post("/rest/api/3/changelog/bulkfetch", body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut created_on_page = Vec::new();
        for log in page["issueChangeLogs"].as_array().expect("logs") {
            let issue: i64 = log["issueId"]
                .as_str()
                .expect("issueId")
                .parse()
                .expect("id");
            for history in log["changeHistories"].as_array().expect("histories") {
                created_on_page.push(history["created"].as_i64().expect("epoch ms"));
                merged.entry(issue).or_default().push(history.clone());
            }
        }
        assert!(created_on_page.len() <= max);
        let earliest = created_on_page.iter().min().copied().unwrap_or(i64::MAX);
        assert!(earliest >= previous_page_latest, "pages out of order");
        previous_page_latest = created_on_page.iter().max().copied().unwrap_or(i64::MIN);
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return merged,
        }
    }
}

#[tokio::test]
async fn bulk_changelogs_page_by_history_and_merged_by_issue_hold_every_history() {
    let site = Site::start(SimConfig::small()).await;
    let ids: Vec<i64> = site.sim.truth().issues.iter().map(|i| i.id).collect();
    let merged = bulk_histories(&site, &ids, 500).await;
    let mut total = 0;
    for &id in &ids {
        let want = site.sim.work_counts(id).0;
        let got = merged.get(&id).map_or(0, Vec::len);
        assert_eq!(got, want, "issue {id}");
        total += got;
    }
    let truth = site.sim.work_truth();
    assert_eq!(total, truth.changelog_ids.len());
    let long = site.issue_with(|(histories, _, _)| histories > 100);
    assert!(merged[&long].len() > 100);

    let too_many: Vec<i64> = (0..1001).collect();
    let (status, _) = site
        .post(
            "/rest/api/3/changelog/bulkfetch",
            json!({"issueIdsOrKeys": too_many}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = site
        .post(
            "/rest/api/3/changelog/bulkfetch",
            json!({"issueIdsOrKeys": [ids[0]], "maxResults": 10_001}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn histories_agree_with_the_issue_and_an_edit_records_what_it_changed() {
    let site = Site::start(SimConfig::small()).await;
    let id = site.issue_with(|(histories, _, _)| histories > 3);
    let (_, page) = site
        .get(
            &format!("/rest/api/3/issue/{id}/changelog"),
            &[("maxResults", "100".to_owned())],
        )
        .await;
    let histories = page["values"].as_array().expect("values").clone();
    let (_, issue) = site
        .get(
            &format!("/rest/api/3/issue/{id}"),
            &[("fields", "status,created".to_owned())],
        )
        .await;
    let status_changes: Vec<(i64, String, String)> = histories
        .iter()
        .flat_map(|h| {
            let at = parse_jira_timestamp(h["created"].as_str().expect("created"))
                .expect("timestamp")
                .timestamp_millis();
            h["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter(|i| i["fieldId"] == "status")
                .map(move |i| {
                    (
                        at,
                        i["from"].as_str().expect("from").to_owned(),
                        i["to"].as_str().expect("to").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some((_, _, to)) = status_changes.last() {
        assert_eq!(Some(to.as_str()), issue["fields"]["status"]["id"].as_str());
    }
    // Time in each status, as a client computes it, equals the simulator's.
    let created = parse_jira_timestamp(issue["fields"]["created"].as_str().expect("created"))
        .expect("timestamp")
        .timestamp_millis();
    let mut spent: BTreeMap<String, i64> = BTreeMap::new();
    let mut since = created;
    for (at, from, _) in &status_changes {
        *spent.entry(from.clone()).or_default() += at - since;
        since = *at;
    }
    assert_eq!(spent, site.sim.time_in_status(id));

    let before = site.sim.work_counts(id).0;
    site.sim.update_issue(id).expect("update");
    assert_eq!(site.sim.work_counts(id).0, before + 1);
    let (_, page) = site
        .get(
            &format!("/rest/api/3/issue/{id}/changelog"),
            &[("startAt", before.to_string())],
        )
        .await;
    let fields: BTreeSet<&str> = page["values"][0]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["fieldId"].as_str())
        .collect();
    for field in ["status", "assignee", "priority", "summary"] {
        assert!(fields.contains(field), "{field} in {fields:?}");
    }
}

#[tokio::test]
async fn worklog_feeds_page_by_a_thousand_leave_out_the_last_minute_and_list_deletions() {
    let site = Site::start(SimConfig {
        issues: 4_000,
        ..SimConfig::small()
    })
    .await;
    let truth = site.sim.work_truth();
    assert!(
        truth.worklog_ids.len() > 1000,
        "{}",
        truth.worklog_ids.len()
    );
    // Just now: not in the feeds for a minute.
    let issue = site.sim.truth().issues[0].id;
    let fresh = site.sim.add_worklog(issue).expect("log work");
    let old = truth.worklog_ids[0];
    site.sim.delete_worklog(old).expect("delete");

    let mut listed = BTreeSet::new();
    let mut since = "0".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = site
            .get("/rest/api/3/worklog/updated", &[("since", since.clone())])
            .await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let values = page["values"].as_array().expect("values");
        assert!(values.len() <= 1000);
        listed.extend(values.iter().map(|v| v["worklogId"].as_i64().expect("id")));
        if page["lastPage"] == true {
            break;
        }
        since = page["until"].as_i64().expect("until").to_string();
    }
    assert!(pages >= 2);
    assert!(!listed.contains(&fresh), "listed within its first minute");
    let want: BTreeSet<i64> = site
        .sim
        .work_truth()
        .worklog_ids
        .into_iter()
        .filter(|&id| id != fresh)
        .collect();
    assert_eq!(listed, want);
    let (_, deleted) = site
        .get("/rest/api/3/worklog/deleted", &[("since", "0".to_owned())])
        .await;
    assert_eq!(deleted["values"].as_array().map(Vec::len), Some(0));
    assert_eq!(site.sim.work_truth().deleted_worklog_ids, vec![old]);

    let some: Vec<i64> = want.iter().take(3).copied().collect();
    let (status, list) = site
        .post("/rest/api/3/worklog/list", json!({ "ids": some }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<i64> = list.as_array().expect("array").iter().map(id_of).collect();
    assert_eq!(got, some);
    let (status, _) = site
        .post(
            "/rest/api/3/worklog/list",
            json!({ "ids": (0..1001).collect::<Vec<i64>>() }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_link_shows_on_both_issues_and_adding_or_removing_it_moves_both() {
    let site = Site::start(SimConfig::small()).await;
    let issues = site.sim.truth().issues;
    let (a, b) = (issues[10].clone(), issues[11].clone());
    let link = site.sim.add_link(a.id, b.id).expect("link");
    let links = |value: &Value| value["fields"]["issuelinks"].as_array().cloned();
    let (_, seen_from_a) = site
        .get(
            &format!("/rest/api/3/issue/{}", a.id),
            &[("fields", "issuelinks,updated".to_owned())],
        )
        .await;
    let on_a = links(&seen_from_a).expect("links");
    let mine = on_a
        .iter()
        .find(|l| id_of(l) == link)
        .expect("the link on A");
    assert_eq!(id_of(&mine["outwardIssue"]), b.id);
    let (_, seen_from_b) = site
        .get(
            &format!("/rest/api/3/issue/{}", b.id),
            &[("fields", "issuelinks".to_owned())],
        )
        .await;
    let theirs = links(&seen_from_b)
        .expect("links")
        .into_iter()
        .find(|l| id_of(l) == link)
        .expect("the link on B");
    assert_eq!(id_of(&theirs["inwardIssue"]), a.id);
    let truth = site.sim.truth();
    let updated = |id: i64| truth.issues.iter().find(|i| i.id == id).map(|i| i.updated);
    assert!(updated(a.id) > Some(a.updated) && updated(b.id) > Some(b.updated));
    assert!(site.sim.work_truth().link_ids.contains(&link));

    site.sim.delete_link(link).expect("unlink");
    assert!(!site.sim.work_truth().link_ids.contains(&link));
    let (_, seen_from_a) = site
        .get(
            &format!("/rest/api/3/issue/{}", a.id),
            &[("fields", "issuelinks".to_owned())],
        )
        .await;
    assert!(
        !links(&seen_from_a)
            .expect("links")
            .iter()
            .any(|l| id_of(l) == link)
    );
}
