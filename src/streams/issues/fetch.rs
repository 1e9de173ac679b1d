//! Issues by id, all fields, as Jira sends them: the census confirms candidates with it, and the
//! issues stream fetches the issues it holds in quarantine again. Cloud answers
//! `POST /rest/api/3/issue/bulkfetch` (up to 100 ids); Data Center, which has no bulk fetch, a
//! search for `id in (...)` sent with `validateQuery: false` (it refuses a validated query
//! naming an issue that does not exist), and should it refuse that all the same (400),
//! `GET /rest/api/2/issue/{id}` for each, where 404 means gone.

use crate::jira::model::{BulkFetchResult, LegacySearchPage, RawRecord};
use crate::jira::{Flavor, JiraError};
use crate::streams::{RunCounters, StreamContext};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Jira's cap on ids per bulk fetch (and the chunk of an id search).
pub const BULK_FETCH_SIZE: usize = 100;

/// Fetches `ids`. Returns the issues Jira still shows, and the ids it reported errors for
/// (neither present nor absent: never taken for deleted).
pub async fn fetch_issues(
    ctx: &StreamContext,
    ids: &[i64],
    counters: &RunCounters,
) -> anyhow::Result<(Vec<RawRecord>, HashSet<i64>)> {
    match ctx.flavor() {
        Flavor::Cloud => bulk_fetch(ctx, ids, counters, &["*all"]).await,
        Flavor::DataCenter => Ok((search_by_id(ctx, ids, counters).await?, HashSet::new())),
    }
}

/// Cloud's `POST /rest/api/3/issue/bulkfetch` of `ids` with `fields`, 100 ids a request:
/// the issues Jira still shows, and the ids it reported errors for.
pub(super) async fn bulk_fetch(
    ctx: &StreamContext,
    ids: &[i64],
    counters: &RunCounters,
    fields: &[&str],
) -> anyhow::Result<(Vec<RawRecord>, HashSet<i64>)> {
    let mut found = Vec::new();
    let mut errored = HashSet::new();
    for chunk in ids.chunks(BULK_FETCH_SIZE) {
        let body = json!({
            "issueIdsOrKeys": chunk.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
            "fields": fields,
        });
        counters.request();
        // An answer without its `issues` array is a decode error, never "all gone".
        let result: BulkFetchResult = ctx
            .client
            .post("/rest/api/3/issue/bulkfetch", &body)
            .await?;
        found.extend(result.issues);
        for error in &result.issue_errors {
            let id = error.get("id").and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            });
            match id {
                Some(id) => {
                    errored.insert(id);
                }
                // An error without an id protects the whole chunk.
                None => errored.extend(chunk.iter().copied()),
            }
        }
    }
    Ok((found, errored))
}

/// Data Center: the issues among `ids` it still shows; the others are gone.
async fn search_by_id(
    ctx: &StreamContext,
    ids: &[i64],
    counters: &RunCounters,
) -> anyhow::Result<Vec<RawRecord>> {
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
                    let got = page.issues.len();
                    found.extend(page.issues);
                    read += got;
                    let total = page.total.unwrap_or(read).min(chunk.len());
                    if got == 0 || read >= total {
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
                    if let Some(issue) = fetch_one(ctx, id, counters).await? {
                        found.push(issue);
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
) -> anyhow::Result<Option<RawRecord>> {
    counters.request();
    let path = format!("/rest/api/2/issue/{id}");
    match ctx.client.get::<RawRecord>(&path, &[]).await {
        Ok(issue) => Ok(Some(issue)),
        Err(JiraError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}
