//! Issues from a Data Center / Server site, which has no `/search/jql`: `POST
//! /rest/api/2/search` per project, ordered `updated ASC, key ASC`, paged with `startAt`,
//! `maxResults` and `total`. The checkpoint is the Cloud stream's (one cursor per project).
//!
//! Offset paging shifts when an issue is updated mid-scan (it moves to the end of the
//! ordering), so a page boundary can skip an issue. The project's mark is therefore written
//! only with its last page: pages before it are committed without moving the cursor, and an
//! issue skipped that way was updated after the scan started, which the next run's
//! `updated >= mark - overlap` query (the mark is at most `scan start - LAG`) reads again.

use super::{Issues, LAG, ORDER, ProjectCursor, ProjectRow, set_project};
use crate::jira::model::LegacySearchPage;
use crate::store::CheckpointWrite;
use crate::streams::RunCounters;
use crate::streams::parse::identify;
use crate::streams::{Run, StreamContext};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;
use std::collections::HashSet;

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
        let filter = stream.project_filter(zone, project.id, cursor);
        sync_project(stream, ctx, run, project, cursor, &filter, started).await?;
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
    filter: &str,
    started: DateTime<Utc>,
) -> anyhow::Result<()> {
    let jql = format!("{filter}{ORDER}");
    let mut mark = cursor.mark;
    let mut start_at = 0;
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": PAGE_SIZE, "fields": ["*all"],
        });
        run.counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        let total = page.total;
        let got = page.issues.len();

        pages += 1;
        start_at += got;
        let last = got == 0 || total.is_none_or(|total| start_at >= total);
        let (count, written) = stream
            .write_page(ctx, run.counters, page.issues, |rows| {
                seen.extend(rows.iter().map(|r| r.id));
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
        seen.extend(
            written
                .set_aside
                .iter()
                .filter_map(|id| id.parse::<i64>().ok()),
        );
        run.counters.page(count, written, run.progress);
        if last {
            break;
        }
    }
    // Offset pages shift when an issue read earlier changes or vanishes mid-scan.
    if pages > 1 {
        let listed = list_ids(ctx, run.counters, filter).await?;
        stream
            .reconcile(ctx, run.counters, run.progress, &listed, &seen, true)
            .await?;
    }
    Ok(())
}

/// Asked for on every id page; Data Center caps it at its `jira.search.views.default.max`
/// (1000 by default) and says in `maxResults` what it applied.
const ID_PAGE_SIZE: usize = 1000;

/// Every issue id Data Center lists for `filter` (JQL without `ORDER BY`) now.
pub(crate) async fn list_ids(
    ctx: &StreamContext,
    counters: &RunCounters,
    filter: &str,
) -> anyhow::Result<HashSet<i64>> {
    let jql = format!("{filter} ORDER BY id ASC");
    let mut ids = HashSet::new();
    let mut start_at = 0usize;
    let mut page_size = ID_PAGE_SIZE;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": page_size, "fields": ["id"],
        });
        counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        let before = ids.len();
        for issue in &page.issues {
            let (id, _) = identify(issue);
            ids.insert(id.parse().map_err(|_| {
                anyhow::anyhow!("an id-only search page lists an issue without a numeric id ({id})")
            })?);
        }
        start_at += page.issues.len();
        if page.issues.is_empty() || page.total.is_none_or(|total| start_at >= total) {
            return Ok(ids);
        }
        if ids.len() == before {
            anyhow::bail!(
                "the id listing `{filter}` at startAt={start_at} brought no issue not seen \
                 before: the server does not page as Jira does"
            );
        }
        // Ask for no more than the server grants, so every page is a whole one.
        page_size = page.max_results.filter(|m| *m > 0).unwrap_or(page_size);
    }
}
