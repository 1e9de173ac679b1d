//! Issues from a Data Center / Server site, which has no `/search/jql`: `POST
//! /rest/api/2/search` per project, ordered `updated ASC, key ASC`, paged with `startAt`,
//! `maxResults` and `total`. The checkpoint is the Cloud stream's (one cursor per project).
//!
//! Offset paging shifts when an issue is updated mid-scan (it moves to the end of the
//! ordering), so a page boundary can skip an issue. The project's mark is therefore written
//! only with its last page: pages before it are committed without moving the cursor, and an
//! issue skipped that way was updated after the scan started, which the next run's
//! `updated >= mark - overlap` query (the mark is at most `scan start - LAG`) reads again.

use super::{Issues, LAG, ProjectCursor, ProjectRow, set_project};
use crate::jira::model::LegacySearchPage;
use crate::store::CheckpointWrite;
use crate::streams::{Run, StreamContext};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// Full-field pages; Data Center's default cap is higher, but 100 keeps pages small.
const PAGE_SIZE: usize = 100;

/// Reads every project of `work` from its cursor, one after another.
pub(super) async fn run(
    stream: &Issues,
    ctx: &StreamContext,
    zone: Tz,
    run: &Run<'_>,
    work: &[(ProjectRow, ProjectCursor)],
) -> anyhow::Result<()> {
    let started = ctx.client.server_now();
    for (project, cursor) in work {
        let jql = stream.project_jql(zone, project.id, cursor);
        sync_project(stream, ctx, run, project, cursor, &jql, started).await?;
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn sync_project(
    stream: &Issues,
    ctx: &StreamContext,
    run: &Run<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    jql: &str,
    started: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut mark = cursor.mark;
    let mut start_at = 0;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": PAGE_SIZE, "fields": ["*all"],
        });
        run.counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        let total = page.total;
        let mut last = false;
        let (seen, written) = stream
            .write_page(ctx, run.counters, page.issues, |rows| {
                start_at += rows.len();
                last = rows.is_empty() || total.is_none_or(|total| start_at >= total);
                let page_max = rows.iter().map(|r| r.updated).max();
                mark = mark.max(page_max.map(|m| m.min(started - LAG)));
                Ok(if last {
                    let done = ProjectCursor {
                        key: project.key.clone(),
                        mark,
                        complete: true,
                        ..ProjectCursor::default()
                    };
                    set_project(project.id, done)
                } else {
                    CheckpointWrite::None
                })
            })
            .await?;
        run.counters.page(seen, written, run.progress);
        if last {
            return Ok(());
        }
    }
}
