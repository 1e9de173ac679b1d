//! The delete census: search never returns deleted issues, so deletions are found by listing
//! every issue id per project (id-only pages of up to 5000; a big project in ranges of
//! `created` listed at once) and diffing against the table.
//!
//! Candidates are confirmed with `POST /rest/api/3/issue/bulkfetch` (up to 100 ids): an issue
//! that comes back was moved (or is still there) and is upserted with its current key and
//! project; one that does not is gone and gets `deleted_at`. Ids the API lists for a project
//! that the table does not hold live in it (new, deleted, or under another project) are
//! fetched the same way, so an issue that reappears clears its `deleted_at` and one moved in
//! gets its new project. The diff is made in memory against the project's stored ids. Losing permission looks exactly like deletion, so when more than
//! `sync.census_max_delete_share` of a project vanishes at once nothing is marked and the run
//! warns instead.
//!
//! Data Center lists and confirms through `/rest/api/2/search` instead ([`dc`]); the diff, the
//! guard and the checkpoint are the same.

mod dc;

use super::issues::parse_issue;
use super::projects::list_selected;
use super::ranges::{LIST_PAGE_SIZE, list_pages};
use super::{RunCounters, StreamContext, StreamStatus};
use crate::store::CheckpointWrite;
use crate::store::rows::{IssueRow, ProjectRow};
use crate::sync::progress::Progress;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

pub const STREAM: &str = "census";
/// Jira's cap on ids per bulk fetch.
const BULK_FETCH_SIZE: usize = 100;
const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CensusCheckpoint {
    pub version: u32,
    #[serde(default)]
    pub last_completed: Option<DateTime<Utc>>,
}

/// What a census found, summed over projects.
#[derive(Debug, Default)]
pub struct CensusTally {
    pub deleted: AtomicU64,
    pub restored_or_moved: AtomicU64,
    pub suspicious_projects: AtomicU64,
}

/// Whether the census is due: never run, or last completed more than `census_interval_secs` ago.
pub async fn due(ctx: &StreamContext) -> anyhow::Result<bool> {
    let Some(value) = ctx.store.load_checkpoint(&ctx.site, STREAM).await? else {
        return Ok(true);
    };
    let cp: CensusCheckpoint = serde_json::from_value(value).unwrap_or_default();
    let interval = chrono::Duration::seconds(
        i64::try_from(ctx.sync.census_interval_secs).unwrap_or(i64::MAX / 1000),
    );
    Ok(cp
        .last_completed
        .is_none_or(|last| Utc::now() - last >= interval))
}

pub async fn run(
    ctx: &StreamContext,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    let projects = list_selected(ctx, counters).await?;
    progress.add_total(projects.len() as u64);
    let tally = CensusTally::default();
    futures::stream::iter(projects.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(ctx.max_in_flight.max(1), |project| async {
            census_project(ctx, project, counters, &tally).await?;
            progress.advance(1);
            Ok(())
        })
        .await?;
    let done = CensusCheckpoint {
        version: CHECKPOINT_VERSION,
        last_completed: Some(Utc::now()),
    };
    let write = CheckpointWrite::Replace {
        stream: STREAM,
        value: serde_json::to_value(&done)?,
    };
    ctx.store.save_checkpoint(&ctx.site, &write).await?;
    let deleted = tally.deleted.load(Ordering::Relaxed);
    let restored = tally.restored_or_moved.load(Ordering::Relaxed);
    let suspicious = tally.suspicious_projects.load(Ordering::Relaxed);
    tracing::info!(
        deleted,
        restored_or_moved = restored,
        suspicious_projects = suspicious,
        "census done"
    );
    Ok(StreamStatus::Done)
}

#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn census_project(
    ctx: &StreamContext,
    project: &ProjectRow,
    counters: &RunCounters,
    tally: &CensusTally,
) -> anyhow::Result<()> {
    let data_center = ctx.client.is_data_center();
    let stored: BTreeSet<i64> = ctx
        .store
        .live_issue_ids(&ctx.site, project.id)
        .await?
        .into_iter()
        .collect();
    let listed = match data_center {
        true => dc::list_ids(ctx, project.id, counters).await?,
        false => list_ids_in_ranges(ctx, project.id, &stored, counters).await?,
    };
    let vanished: Vec<i64> = stored.difference(&listed).copied().collect();
    // Listed here but not live here: new, restored, or moved in from another project.
    let unknown: Vec<i64> = listed.difference(&stored).copied().collect();
    if vanished.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    let mut ask: Vec<i64> = vanished.iter().chain(unknown.iter()).copied().collect();
    ask.sort_unstable();
    ask.dedup();
    let (found, errored) = match data_center {
        true => (dc::fetch(ctx, &ask, counters).await?, HashSet::new()),
        false => bulk_fetch(ctx, &ask, counters).await?,
    };
    let present: HashSet<i64> = found.iter().map(|r| r.id).collect();
    let refreshed = found.len() as u64;
    for chunk in found.chunks(BULK_FETCH_SIZE) {
        let written = ctx
            .store
            .write_issue_page(&ctx.site, chunk.to_vec(), &CheckpointWrite::None)
            .await?;
        counters.page(chunk.len(), written, &Progress::hidden(STREAM));
    }
    tally
        .restored_or_moved
        .fetch_add(refreshed, Ordering::Relaxed);
    let gone: Vec<i64> = vanished
        .into_iter()
        .filter(|id| !present.contains(id) && !errored.contains(id))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let share = gone.len() as f64 / stored.len().max(1) as f64;
    if share > ctx.sync.census_max_delete_share {
        tally.suspicious_projects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            vanished = gone.len(),
            stored = stored.len(),
            "{:.0}% of the project's issues vanished at once; this looks like lost permission \
             rather than deletion, so none is marked deleted (check the account's Browse \
             Projects permission and issue security; raise sync.census_max_delete_share if the \
             deletions are real)",
            share * 100.0
        );
        return Ok(());
    }
    let marked = ctx.store.mark_issues_deleted(&ctx.site, &gone).await?;
    tally.deleted.fetch_add(marked, Ordering::Relaxed);
    tracing::info!(marked, "issues deleted in Jira marked deleted");
    Ok(())
}

/// Every issue id Jira lists for the project now. A project of more than a listing page is
/// listed in ranges of `created`, all at once ([`crate::streams::ranges`]), so a big project
/// takes about one round trip rather than a page after another.
async fn list_ids_in_ranges(
    ctx: &StreamContext,
    project_id: i64,
    stored: &BTreeSet<i64>,
    counters: &RunCounters,
) -> anyhow::Result<BTreeSet<i64>> {
    let scope = format!("project = {project_id}");
    let filters = crate::streams::ranges::created_ranges(
        ctx,
        counters,
        &scope,
        stored.len(),
        LIST_PAGE_SIZE,
        ctx.max_in_flight,
    )
    .await?;
    let lists = filters.iter().map(|filter| list_ids(ctx, filter, counters));
    let mut ids = BTreeSet::new();
    for list in futures::future::try_join_all(lists).await? {
        ids.extend(list);
    }
    Ok(ids)
}

/// Every issue id Jira lists for `filter`, from id-only pages.
async fn list_ids(
    ctx: &StreamContext,
    filter: &str,
    counters: &RunCounters,
) -> anyhow::Result<BTreeSet<i64>> {
    let jql = format!("{filter} ORDER BY created ASC, key ASC");
    let mut ids = BTreeSet::new();
    list_pages(ctx, counters, &jql, &["key", "updated"], None, |issue| {
        let record = super::parse::Record::new("issue", issue, &["key", "id"]);
        ids.insert(record.req_id("id")?);
        Ok(())
    })
    .await?;
    Ok(ids)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkFetchResult {
    #[serde(default)]
    issues: Vec<Value>,
    #[serde(default)]
    issue_errors: Vec<Value>,
}

/// Fetches `ids` (all fields). Returns the issues Jira still shows, and the ids it reported
/// errors for (neither present nor absent: never marked deleted).
async fn bulk_fetch(
    ctx: &StreamContext,
    ids: &[i64],
    counters: &RunCounters,
) -> anyhow::Result<(Vec<IssueRow>, HashSet<i64>)> {
    let mut found = Vec::new();
    let mut errored = HashSet::new();
    for chunk in ids.chunks(BULK_FETCH_SIZE) {
        let body = json!({
            "issueIdsOrKeys": chunk.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
            "fields": ["*all"],
        });
        counters.request();
        let result: BulkFetchResult = ctx
            .client
            .post("/rest/api/3/issue/bulkfetch", &body)
            .await?;
        for issue in &result.issues {
            found.push(parse_issue(issue)?);
        }
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
