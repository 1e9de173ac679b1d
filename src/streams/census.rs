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
use super::issues::{TABLE, fetch_issues, read_issues};
use super::parse::identify;
use super::projects::{ProjectRow, list_selected};
use super::ranges::list_ids_in_created_ranges;
use super::{Cursor, NoProgress, Run, RunCounters, Schedule, Stream, StreamContext, StreamStatus};
use crate::jira::Flavor;
use crate::settings::Settings;
use crate::store::children::ChildTable;
use crate::store::status::{Count, Which};
use crate::store::{Batch, CheckpointWrite, PageWrite};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CensusCheckpoint {
    #[serde(default)]
    pub last_completed: Option<DateTime<Utc>>,
    /// The last census was the issues stream's first full scan into an empty table
    /// ([`record_first_scan`]), not a listing of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_first_scan: bool,
}

/// Records a complete first full scan of the issues, into a table that held none of the site's
/// issues, as a census completed at `began` (when the scan began): the scan listed every issue
/// itself, and nothing stored before it could have been deleted, so a census right after it
/// would list every id again to confirm nothing. The next census is due an interval later,
/// as after any other.
pub async fn record_first_scan(ctx: &StreamContext, began: DateTime<Utc>) -> anyhow::Result<()> {
    let done = CensusCheckpoint {
        last_completed: Some(began),
        by_first_scan: true,
    };
    ctx.store
        .save_checkpoint(&ctx.site, checkpoint::replace(&done)?)
        .await
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
    /// Deletions reserved against the site-wide limit.
    reserved: AtomicU64,
}

impl CensusTally {
    /// Reserves `n` deletions unless that would pass `limit` in this census.
    fn reserve(&self, n: u64, limit: u64) -> bool {
        self.reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |done| {
                (done + n <= limit).then_some(done + n)
            })
            .is_ok()
    }
}

/// The delete census: after the issues stream, every `sync.census_interval_secs`.
pub struct Census {
    schedule: Schedule,
    /// Share of a project's issues that may vanish at once before it looks like lost
    /// permission.
    max_delete_share: f64,
    /// Issues one census may mark deleted on the whole site.
    max_deletes: u64,
    /// The records of issues: marked deleted with their issue.
    children: Vec<&'static ChildTable>,
    /// When this process set the stream up: a first full scan recorded after it was made by
    /// this same run ([`record_first_scan`]).
    since: DateTime<Utc>,
}

impl Census {
    pub fn new(settings: &Settings, children: Vec<&'static ChildTable>) -> Census {
        let sync = &settings.sync;
        Census {
            children,
            since: Utc::now(),
            schedule: Schedule {
                follows: Some("issues"),
                ..Schedule::every(sync.issues, sync.census_interval_secs)
            },
            max_delete_share: sync.census_max_delete_share,
            max_deletes: sync.census_max_deletes,
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
        // Asked for before the issues stream ran (a first sync finds the census due, and
        // `--census` asks for it): a first full scan made by this same run stands for it.
        let last = checkpoint::load::<CensusCheckpoint>(ctx).await?;
        let scanned_here = last.is_some_and(|cp| {
            cp.by_first_scan && cp.last_completed.is_some_and(|at| at >= self.since)
        });
        if scanned_here {
            tracing::info!(
                "census not needed: the first full scan listed every issue into an empty table"
            );
            return Ok(StreamStatus::Done);
        }
        let counters = run.counters;
        let projects = list_selected(ctx, counters).await?.rows;
        run.progress.add_total(projects.len() as u64);
        let tally = CensusTally::default();
        let roster = roster(ctx).await?;
        let roster = roster.as_ref();
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
            by_first_scan: false,
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
}

/// How this site lists ids: chosen once per run.
async fn roster(ctx: &StreamContext) -> anyhow::Result<Box<dyn Roster>> {
    Ok(match ctx.flavor() {
        Flavor::Cloud => Box::new(CloudRoster {
            zone: ctx.user_zone().await?,
        }),
        Flavor::DataCenter => Box::new(dc::DataCenterRoster),
    })
}

/// Cloud: id-only search pages in `created` ranges (their dates written in the API user's
/// zone, read at the start of the run).
struct CloudRoster {
    zone: Tz,
}

#[async_trait::async_trait]
impl Roster for CloudRoster {
    async fn list(
        &self,
        ctx: &StreamContext,
        project_id: i64,
        stored: &BTreeSet<i64>,
        counters: &RunCounters,
    ) -> anyhow::Result<BTreeSet<i64>> {
        list_ids_in_ranges(ctx, self.zone, project_id, stored, counters).await
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
        let (found, errored) = fetch_issues(ctx, &ask, counters).await?;
        // Present: every issue Jira returned, read or not (one that cannot be read is set
        // aside for the issues stream's retries, never taken for deleted).
        let present: HashSet<i64> = found
            .iter()
            .filter_map(|raw| identify(raw).0.parse().ok())
            .collect();
        let refreshed = found.len() as u64;
        let read = read_issues("issues", found, &[]);
        let seen = read.rows.len() + read.set_aside.len();
        let rows = read.rows.into_iter().map(|(row, _)| row);
        let mut page = PageWrite::new("issues", Batch::of(&ctx.site, rows), CheckpointWrite::None);
        page.set_aside = read.set_aside;
        page.resolves = true;
        let written = ctx.store.write_page(&ctx.site, page).await?;
        counters.page(seen, written, &NoProgress);
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
        if !tally.reserve(gone.len() as u64, self.max_deletes) {
            tally.suspicious_projects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                vanished = gone.len(),
                limit = self.max_deletes,
                "marking these issues deleted would pass sync.census_max_deletes for one census; \
                 none of this project's is marked (a lying or broken server must not empty the \
                 tables; raise the limit if the deletions are real)"
            );
            return Ok(());
        }
        let marked = ctx
            .store
            .mark_issues_deleted(&TABLE, &ctx.site, &gone, &self.children)
            .await?;
        tally.deleted.fetch_add(marked, Ordering::Relaxed);
        tracing::info!(marked, "issues deleted in Jira marked deleted");
        Ok(())
    }
}

/// Every issue id Jira lists for the project now. A project of more than two listing pages is
/// listed in ranges of `created`, all at once ([`crate::streams::ranges`]), so a big project
/// takes about one round trip rather than a page after another.
async fn list_ids_in_ranges(
    ctx: &StreamContext,
    zone: Tz,
    project_id: i64,
    stored: &BTreeSet<i64>,
    counters: &RunCounters,
) -> anyhow::Result<BTreeSet<i64>> {
    let scope = format!("project = {project_id}");
    let listed = list_ids_in_created_ranges(ctx, counters, zone, &scope, stored.len(), None);
    Ok(listed.await?.into_iter().collect())
}
