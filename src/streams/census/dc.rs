//! The census on Data Center, which has neither `/search/jql` nor bulk fetch: ids are listed
//! with `POST /rest/api/2/search` (`fields=id`, `startAt` paging, as many per page as the
//! server's `maxResults` cap allows), and candidates are confirmed with a search for
//! `id in (...)` (up to 100 at a time) sent with `validateQuery: false`, since Data Center
//! refuses a validated query naming an issue that does not exist. Should a server refuse it
//! all the same (400), each candidate of that chunk is asked for with
//! `GET /rest/api/2/issue/{id}`, where 404 means gone.
//!
//! Offset paging over `ORDER BY id` can skip an issue when one before it is deleted mid-listing;
//! a skipped issue then looks vanished, but the confirmation finds it, so it is never marked.

use super::{BULK_FETCH_SIZE, Roster};
use crate::jira::JiraError;
use crate::jira::model::LegacySearchPage;
use crate::streams::issues::{IssueRow, parse_issue};
use crate::streams::parse::Record;
use crate::streams::{RunCounters, StreamContext};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};

/// Asked for on every id page; Data Center caps it at its `jira.search.views.default.max`
/// (1000 by default) and says in `maxResults` what it applied.
const ID_PAGE_SIZE: usize = 1000;

/// Data Center: ids listed with `startAt` paging, candidates confirmed by an id search.
pub(super) struct DataCenterRoster;

#[async_trait::async_trait]
impl Roster for DataCenterRoster {
    async fn list(
        &self,
        ctx: &StreamContext,
        project_id: i64,
        _stored: &BTreeSet<i64>,
        counters: &RunCounters,
    ) -> anyhow::Result<BTreeSet<i64>> {
        list_ids(ctx, project_id, counters).await
    }

    /// Data Center reports no per-issue errors: an issue it does not return is gone.
    async fn fetch(
        &self,
        ctx: &StreamContext,
        ids: &[i64],
        counters: &RunCounters,
    ) -> anyhow::Result<(Vec<IssueRow>, HashSet<i64>)> {
        Ok((fetch(ctx, ids, counters).await?, HashSet::new()))
    }
}

/// Every issue id Data Center lists for the project now.
async fn list_ids(
    ctx: &StreamContext,
    project_id: i64,
    counters: &RunCounters,
) -> anyhow::Result<BTreeSet<i64>> {
    let jql = format!("project = {project_id} ORDER BY id ASC");
    let mut ids = BTreeSet::new();
    let mut start_at = 0usize;
    let mut page_size = ID_PAGE_SIZE;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": page_size, "fields": ["id"],
        });
        counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        for issue in &page.issues {
            ids.insert(Record::new("issue", issue, &["key", "id"]).req_id("id")?);
        }
        start_at += page.issues.len();
        if page.issues.is_empty() || page.total.is_none_or(|total| start_at >= total) {
            return Ok(ids);
        }
        // Ask for no more than the server grants, so every page is a whole one.
        page_size = page.max_results.filter(|m| *m > 0).unwrap_or(page_size);
    }
}

/// The issues among `ids` that Data Center still shows (all fields); the others are gone.
async fn fetch(
    ctx: &StreamContext,
    ids: &[i64],
    counters: &RunCounters,
) -> anyhow::Result<Vec<IssueRow>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(BULK_FETCH_SIZE) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut body = json!({
            "jql": format!("id in ({list}) ORDER BY id ASC"),
            "startAt": 0,
            "maxResults": chunk.len(),
            "fields": ["*all"],
            "validateQuery": false,
        });
        counters.request();
        match ctx
            .client
            .post::<LegacySearchPage>("/rest/api/2/search", &body)
            .await
        {
            Ok(mut page) => {
                // A server whose page cap is below the chunk answers part of it: page on to
                // the total, so no issue is taken for gone because it did not fit.
                let mut read = 0usize;
                loop {
                    for issue in &page.issues {
                        found.push(parse_issue(issue)?);
                    }
                    read += page.issues.len();
                    let total = page.total.unwrap_or(read).min(chunk.len());
                    if page.issues.is_empty() || read >= total {
                        break;
                    }
                    body["startAt"] = json!(read);
                    counters.request();
                    page = ctx.client.post("/rest/api/2/search", &body).await?;
                }
            }
            Err(JiraError::BadRequest { .. }) => {
                tracing::debug!(
                    ids = chunk.len(),
                    "the id search was refused; asking for each issue"
                );
                for &id in chunk {
                    if let Some(row) = fetch_one(ctx, id, counters).await? {
                        found.push(row);
                    }
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(found)
}

/// One issue by id: `None` when Data Center answers 404 (deleted, or no longer visible).
async fn fetch_one(
    ctx: &StreamContext,
    id: i64,
    counters: &RunCounters,
) -> anyhow::Result<Option<IssueRow>> {
    counters.request();
    let path = format!("/rest/api/2/issue/{id}");
    match ctx.client.get::<Value>(&path, &[]).await {
        Ok(issue) => Ok(Some(parse_issue(&issue)?)),
        Err(JiraError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}
