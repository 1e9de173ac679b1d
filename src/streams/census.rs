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

use super::checkpoint::{self, Checkpoint};
use super::issues::{IssueRow, TABLE, parse_issue};
use super::projects::{ProjectRow, list_selected};
use super::ranges::{LIST_PAGE_SIZE, list_pages};
use super::{Cursor, NoProgress, Run, RunCounters, Schedule, Stream, StreamContext, StreamStatus};
use crate::jira::Flavor;
use crate::settings::Settings;
use crate::store::Batch;
use crate::store::status::{Count, Which};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Jira's cap on ids per bulk fetch.
const BULK_FETCH_SIZE: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CensusCheckpoint {
    #[serde(default)]
    pub last_completed: Option<DateTime<Utc>>,
}

impl Checkpoint for CensusCheckpoint {
    const STREAM: &'static str = "census";
    const VERSION: u32 = 1;
}

/// What a census found, summed over projects.
#[derive(Debug, Default)]
pub struct CensusTally {
    pub deleted: AtomicU64,
    pub restored_or_moved: AtomicU64,
    pub suspicious_projects: AtomicU64,
}

/// The delete census: after the issues stream, every `sync.census_interval_secs`.
pub struct Census {
    schedule: Schedule,
    /// Share of a project's issues that may vanish at once before it looks like lost
    /// permission.
    max_delete_share: f64,
}

impl Census {
    pub fn new(settings: &Settings) -> Census {
        let sync = &settings.sync;
        Census {
            schedule: Schedule {
                follows: Some("issues"),
                ..Schedule::every(sync.issues, sync.census_interval_secs)
            },
            max_delete_share: sync.census_max_delete_share,
        }
    }
}

#[async_trait::async_trait]
impl Stream for Census {
    fn name(&self) -> &'static str {
        CensusCheckpoint::STREAM
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Due when it never completed, or last completed an interval ago or longer.
    async fn due(&self, ctx: &StreamContext) -> anyhow::Result<bool> {
        let Some(value) = ctx
            .store
            .load_checkpoint(&ctx.site, CensusCheckpoint::STREAM)
            .await?
        else {
            return Ok(true);
        };
        let cp = checkpoint::decode::<CensusCheckpoint>(value).unwrap_or_default();
        let interval =
            chrono::Duration::from_std(self.schedule.interval).unwrap_or(chrono::Duration::MAX);
        Ok(cp
            .last_completed
            .is_none_or(|last| Utc::now() - last >= interval))
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let counters = run.counters;
        let projects = list_selected(ctx, counters).await?;
        run.progress.add_total(projects.len() as u64);
        let tally = CensusTally::default();
        let roster = roster(ctx.flavor());
        futures::stream::iter(projects.iter().map(Ok::<_, anyhow::Error>))
            .try_for_each_concurrent(ctx.max_in_flight.max(1), |project| async {
                self.census_project(ctx, roster, project, counters, &tally)
                    .await?;
                run.progress.advance(1);
                Ok(())
            })
            .await?;
        let done = CensusCheckpoint {
            last_completed: Some(Utc::now()),
        };
        ctx.store
            .save_checkpoint(&ctx.site, checkpoint::replace(&done)?)
            .await?;
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

    fn cursor(&self, checkpoint: Option<&Value>) -> Cursor {
        let Some(value) = checkpoint else {
            return Cursor::not_yet();
        };
        match checkpoint::decode::<CensusCheckpoint>(value.clone()) {
            Ok(cp) => Cursor::new(cp.last_completed, "when the last census completed"),
            Err(_) => Cursor::unreadable(),
        }
    }

    /// The issues it marked deleted.
    fn rows(&self, site: &str) -> Option<Count> {
        Some(Count {
            table: &TABLE,
            owner: site.to_owned(),
            which: Which::Deleted,
        })
    }
}

/// How a flavor of Jira lists a project's issue ids and confirms candidates.
#[async_trait::async_trait]
trait Roster: Send + Sync {
    /// Every issue id Jira lists for the project now.
    async fn list(
        &self,
        ctx: &StreamContext,
        project_id: i64,
        stored: &BTreeSet<i64>,
        counters: &RunCounters,
    ) -> anyhow::Result<BTreeSet<i64>>;

    /// The issues among `ids` that Jira still shows (all fields), and the ids it reported
    /// errors for (neither present nor absent: never marked deleted).
    async fn fetch(
        &self,
        ctx: &StreamContext,
        ids: &[i64],
        counters: &RunCounters,
    ) -> anyhow::Result<(Vec<IssueRow>, HashSet<i64>)>;
}

fn roster(flavor: Flavor) -> &'static dyn Roster {
    match flavor {
        Flavor::Cloud => &CloudRoster,
        Flavor::DataCenter => &dc::DataCenterRoster,
    }
}

/// Cloud: id-only search pages in `created` ranges, confirmed by bulk fetch.
struct CloudRoster;

#[async_trait::async_trait]
impl Roster for CloudRoster {
    async fn list(
        &self,
        ctx: &StreamContext,
        project_id: i64,
        stored: &BTreeSet<i64>,
        counters: &RunCounters,
    ) -> anyhow::Result<BTreeSet<i64>> {
        list_ids_in_ranges(ctx, project_id, stored, counters).await
    }

    async fn fetch(
        &self,
        ctx: &StreamContext,
        ids: &[i64],
        counters: &RunCounters,
    ) -> anyhow::Result<(Vec<IssueRow>, HashSet<i64>)> {
        bulk_fetch(ctx, ids, counters).await
    }
}

impl Census {
    #[tracing::instrument(skip_all, fields(project = %project.key))]
    async fn census_project(
        &self,
        ctx: &StreamContext,
        roster: &dyn Roster,
        project: &ProjectRow,
        counters: &RunCounters,
        tally: &CensusTally,
    ) -> anyhow::Result<()> {
        let stored: BTreeSet<i64> = ctx
            .store
            .live_ids_where(&TABLE, &ctx.site, "project_id", project.id)
            .await?
            .into_iter()
            .collect();
        let listed = roster.list(ctx, project.id, &stored, counters).await?;
        let vanished: Vec<i64> = stored.difference(&listed).copied().collect();
        // Listed here but not live here: new, restored, or moved in from another project.
        let unknown: Vec<i64> = listed.difference(&stored).copied().collect();
        if vanished.is_empty() && unknown.is_empty() {
            return Ok(());
        }
        let mut ask: Vec<i64> = vanished.iter().chain(unknown.iter()).copied().collect();
        ask.sort_unstable();
        ask.dedup();
        let (found, errored) = roster.fetch(ctx, &ask, counters).await?;
        let present: HashSet<i64> = found.iter().map(|r| r.id).collect();
        let refreshed = found.len() as u64;
        for chunk in found.chunks(BULK_FETCH_SIZE) {
            let written = ctx
                .store
                .write(Batch::of(&ctx.site, chunk.to_vec()))
                .await?;
            counters.page(chunk.len(), written, &NoProgress);
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
        if share > self.max_delete_share {
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
        let marked = ctx.store.mark_deleted(&TABLE, &ctx.site, &gone).await?;
        tally.deleted.fetch_add(marked, Ordering::Relaxed);
        tracing::info!(marked, "issues deleted in Jira marked deleted");
        Ok(())
    }
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
