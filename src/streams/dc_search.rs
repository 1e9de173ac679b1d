//! Issues from a Data Center / Server site, which has no `/search/jql`: `POST
//! /rest/api/2/search` per project, ordered `updated ASC, key ASC`, paged with `startAt`,
//! `maxResults` and `total`. The checkpoint is the Cloud stream's (one cursor per project).
//!
//! Offset paging shifts when an issue is updated mid-scan (it moves to the end of the
//! ordering), so a page boundary can skip an issue. The project's mark is therefore written
//! only with its last page: pages before it are committed without moving the cursor, and an
//! issue skipped that way was updated after the scan started, which the next run's
//! `updated >= mark - overlap` query (the mark is at most `scan start - LAG`) reads again.

use super::issues::{
    IssuesCheckpoint, LAG, ProjectCursor, load_checkpoint, page_path, parse_issue, project_jql,
};
use super::projects::list_selected;
use super::{Mode, RunCounters, StreamContext, StreamStatus};
use crate::jira::model::LegacySearchPage;
use crate::store::CheckpointWrite;
use crate::store::rows::ProjectRow;
use crate::sync::progress::Progress;
use chrono::{DateTime, Utc};
use serde_json::json;

/// Full-field pages; Data Center's default cap is higher, but 100 keeps pages small.
const PAGE_SIZE: usize = 100;

/// The issues stream of a Data Center site.
pub async fn run(
    ctx: &StreamContext,
    mode: Mode,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    let started = Utc::now();
    let checkpoint = match mode {
        Mode::Full => IssuesCheckpoint::default(),
        Mode::Incremental => load_checkpoint(ctx).await?.unwrap_or_default(),
    };
    for project in list_selected(ctx, counters).await? {
        let cursor = checkpoint
            .projects
            .get(&project.id.to_string())
            .cloned()
            .unwrap_or_default();
        sync_project(ctx, &project, &cursor, started, counters, progress).await?;
    }
    Ok(StreamStatus::Done)
}

#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn sync_project(
    ctx: &StreamContext,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    started: DateTime<Utc>,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<()> {
    let jql = project_jql(ctx, project.id, cursor);
    let mut mark = cursor.mark;
    let mut start_at = 0;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": PAGE_SIZE, "fields": ["*all"],
        });
        counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        let rows = page
            .issues
            .iter()
            .map(parse_issue)
            .collect::<Result<Vec<_>, _>>()?;
        let seen = rows.len();
        start_at += seen;
        let last = seen == 0 || page.total.is_none_or(|total| start_at >= total);
        let page_max = rows.iter().map(|r| r.updated).max();
        mark = mark.max(page_max.map(|m| m.min(started - LAG)));
        let write = if last {
            let done = ProjectCursor {
                key: project.key.clone(),
                mark,
                complete: true,
                ..ProjectCursor::default()
            };
            page_path(project, None, serde_json::to_value(&done)?)
        } else {
            CheckpointWrite::None
        };
        let written = ctx.store.write_issue_page(&ctx.site, rows, &write).await?;
        counters.page(seen, written, progress);
        if last {
            return Ok(());
        }
    }
}
