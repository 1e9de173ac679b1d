//! Projects: `/rest/api/3/project/search`, live and archived, paged to `isLast`; on Data Center,
//! which lacks that endpoint, `/rest/api/2/project?includeArchived=true`, one unpaged array. A
//! full refresh each run. Projects that no longer appear are soft-deleted, unless so many vanish
//! at once that lost permission is the likelier cause.

use super::parse::{ParseError, Record};
use super::{RunCounters, StreamContext, StreamStatus, project_selected};
use crate::jira::JiraError;
use crate::jira::model::ProjectPage;
use crate::store::rows::ProjectRow;
use crate::sync::progress::Progress;
use serde_json::Value;

/// Jira's cap on `maxResults` for this endpoint.
const PAGE_SIZE: usize = 100;
/// Expands a dashboard needs: description, lead, the issue-count insight and the URL.
const EXPAND: &str = "description,lead,insight,url";
/// Data Center has no insight expand.
const DC_EXPAND: &str = "description,lead,url";
/// Share of known projects that may vanish in one run before we suspect lost permission.
const MAX_VANISH_SHARE: f64 = 0.5;

pub async fn run(
    ctx: &StreamContext,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    let rows = list_selected(ctx, counters).await?;
    progress.add_total(rows.len() as u64);
    for chunk in rows.chunks(PAGE_SIZE) {
        let written = ctx.store.write_projects(&ctx.site, chunk).await?;
        counters.page(chunk.len(), written, progress);
    }
    let seen: Vec<i64> = rows.iter().map(|r| r.id).collect();
    mark_vanished(ctx, &seen).await?;
    Ok(StreamStatus::Done)
}

/// Every project the account can see (live and archived) that the config selects, once each.
/// The issues stream uses it too, to know which projects to search.
pub async fn list_selected(
    ctx: &StreamContext,
    counters: &RunCounters,
) -> anyhow::Result<Vec<ProjectRow>> {
    if ctx.client.is_data_center() {
        return list_data_center(ctx, counters).await;
    }
    // Live and archived projects are listed at the same time.
    let (live, archived) = futures::future::try_join(
        list_status(ctx, counters, "live"),
        list_status(ctx, counters, "archived"),
    )
    .await?;
    selected(ctx, live.iter().chain(&archived))
}

/// The projects of `values` that the config selects, parsed, by id, once each.
fn selected<'a>(
    ctx: &StreamContext,
    values: impl Iterator<Item = &'a Value>,
) -> anyhow::Result<Vec<ProjectRow>> {
    let mut all = Vec::new();
    for value in values {
        let row = parse_project(value)?;
        if project_selected(&ctx.sync, &row.key) {
            all.push(row);
        }
    }
    all.sort_by_key(|p| p.id);
    all.dedup_by_key(|p| p.id);
    Ok(all)
}

/// Every project of one `status`, paged to `isLast`. When the first page tells the total, the
/// pages after it are asked for at once, stepping by as many as the first page held (the page
/// size Jira applied). Should one of them come back short of a full page before the end (the
/// total grew or shrank meanwhile), paging goes on one page after another from there, so
/// nothing is skipped; rows seen twice are deduplicated by the caller.
async fn list_status(
    ctx: &StreamContext,
    counters: &RunCounters,
    status: &str,
) -> anyhow::Result<Vec<Value>> {
    let first = fetch_page(ctx, counters, status, 0).await?;
    let step = first.values.len();
    let mut start_at = step;
    let mut last = is_last_page(&first);
    let mut values = first.values;
    if !last && let Some(total) = first.total.and_then(|t| usize::try_from(t).ok()) {
        let starts: Vec<usize> = (step..total).step_by(step.max(1)).collect();
        // The client's in-flight cap bounds how many go out at once.
        let requests: Vec<_> = starts
            .iter()
            .map(|&at| fetch_page(ctx, counters, status, at))
            .collect();
        let pages = futures::future::try_join_all(requests).await?;
        for (at, page) in starts.iter().zip(pages) {
            let full = page.values.len() >= step;
            start_at = at + page.values.len();
            last = is_last_page(&page);
            values.extend(page.values);
            if !full && !last {
                // A gap may follow this page: read on from here.
                break;
            }
        }
    }
    while !last {
        let page = fetch_page(ctx, counters, status, start_at).await?;
        start_at += page.values.len();
        last = is_last_page(&page);
        values.extend(page.values);
    }
    Ok(values)
}

fn is_last_page(page: &ProjectPage) -> bool {
    page.values.is_empty() || page.is_last.unwrap_or(page.values.len() < PAGE_SIZE)
}

/// Data Center: every project, archived ones included, in one array (no paging).
async fn list_data_center(
    ctx: &StreamContext,
    counters: &RunCounters,
) -> anyhow::Result<Vec<ProjectRow>> {
    counters.request();
    let query = [
        ("includeArchived", "true".to_owned()),
        ("expand", DC_EXPAND.to_owned()),
    ];
    let values: Vec<Value> = ctx.client.get("/rest/api/2/project", &query).await?;
    selected(ctx, values.iter())
}

async fn fetch_page(
    ctx: &StreamContext,
    counters: &RunCounters,
    status: &str,
    start_at: usize,
) -> anyhow::Result<ProjectPage> {
    counters.request();
    let query = [
        ("startAt", start_at.to_string()),
        ("maxResults", PAGE_SIZE.to_string()),
        ("status", status.to_string()),
        ("expand", EXPAND.to_string()),
        ("orderBy", "key".to_string()),
    ];
    match ctx.client.get("/rest/api/3/project/search", &query).await {
        Ok(page) => Ok(page),
        // Jira answers 404 when no project matches: an empty result, not an error.
        Err(JiraError::NotFound { .. }) => Ok(ProjectPage {
            values: Vec::new(),
            is_last: Some(true),
            total: Some(0),
        }),
        Err(err) => Err(err.into()),
    }
}

async fn mark_vanished(ctx: &StreamContext, seen: &[i64]) -> anyhow::Result<()> {
    let known = ctx.store.count_live_projects(&ctx.site).await?;
    let vanished = ctx.store.count_projects_missing(&ctx.site, seen).await?;
    if vanished == 0 {
        return Ok(());
    }
    if known > 0 && (seen.is_empty() || vanished as f64 / known as f64 > MAX_VANISH_SHARE) {
        tracing::warn!(
            site = %ctx.site,
            known,
            vanished,
            "most projects vanished at once; this looks like lost permission rather than \
             deletion, so none is marked deleted (check the account's Browse Projects permission)"
        );
        return Ok(());
    }
    let marked = ctx.store.mark_projects_deleted(&ctx.site, seen).await?;
    tracing::info!(site = %ctx.site, marked, "projects no longer visible marked deleted");
    Ok(())
}

/// Reads one project record into a row.
pub fn parse_project(value: &Value) -> Result<ProjectRow, ParseError> {
    let r = Record::new("project", value, &["key", "id"]);
    let archived = r.opt_bool("archived")?.unwrap_or(false);
    Ok(ProjectRow {
        id: r.req_id("id")?,
        key: r.req_str("key")?,
        name: r.opt_str("name")?.unwrap_or_default(),
        project_type: r.opt_str("projectTypeKey")?,
        style: r.opt_str("style")?,
        simplified: r.opt_bool("simplified")?,
        category_id: r.opt_id("projectCategory.id")?,
        category_name: r.opt_str("projectCategory.name")?,
        // Data Center has no account ids: its users are keyed by `key` (see the users stream).
        lead_account_id: match r.opt_str("lead.accountId")? {
            Some(id) => Some(id),
            None => r.opt_str("lead.key")?,
        },
        is_private: r.opt_bool("isPrivate")?,
        archived,
        archived_at: r.opt_ts("archivedDate")?,
        raw: value.clone(),
    })
}
