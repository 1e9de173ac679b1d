//! Issues: `POST /rest/api/3/search/jql`, one bounded query per project ordered by
//! `updated ASC, key ASC`, all fields, following `nextPageToken` to the end. Projects run in
//! parallel; a big project is split into `updated` ranges read in parallel ([`split`]). The
//! pages being fetched or written at once are bounded by `rate_limit.max_in_flight`, which
//! bounds memory as well as requests.
//!
//! Checkpoint (`jira.sync_state`, stream `issues`): one cursor per project,
//! `{"version":1,"projects":{"<id>":{"key":..,"mark":..,"complete":..,"split":..}}}`. The mark
//! is `min(max updated committed, scan start - lag)`, written with the page it covers; the next
//! run asks for `updated >= mark - overlap` in the API user's time zone, and the upsert by id
//! makes re-reading the overlap harmless. `split`, while a split scan is under way, holds the
//! ranges and their own cursors; a run that finds it resumes the ranges.

pub(super) mod dc;
mod fetch;
mod split;

use super::checkpoint::{self, Checkpoint};
use super::parse::{ParseError, Read, Record, identify, read_heads};
use super::projects::{ProjectRow, list_selected, probe_listing};
use super::ranges::list_ids;
use super::{
    Availability, ChildRun, Cursor, IssueChild, Mode, Probe, Progress, Run, RunCounters, Schedule,
    Stream, StreamContext, StreamStatus,
};
use crate::jira::model::{ApproximateCount, RawRecord, SearchPage};
use crate::jira::time::jql_lower_bound_literal;
use crate::jira::{Flavor, JiraError};
use crate::settings::Settings;
use crate::store::status::{Count, Which};
use crate::store::table::RawJson;
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, CheckpointWrite, PageWrite, Row, Written};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use fetch::{BULK_FETCH_SIZE, fetch_issues};
pub use split::{RangeCursor, SplitScan};

/// Full-field pages: Jira caps them near 100 whatever is asked.
const PAGE_SIZE: u32 = 100;
/// How every scan of issues is ordered.
pub(super) const ORDER: &str = " ORDER BY updated ASC, key ASC";
/// Search is eventually consistent: the mark never passes `scan start - LAG`.
pub(super) const LAG: Duration = Duration::minutes(5);
/// The most issues a scan marks deleted for having left its filter while it ran (see
/// [`Issues::reconcile`]); more is left to the census.
const MAX_VANISHED_MID_SCAN: usize = 100;
/// Projects per approximate-count query (keeps the JQL short).
const COUNT_CHUNK: usize = 100;

/// `jira.issues`.
pub static TABLE: Table = Table {
    name: "jira.issues",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("key", Kind::Text),
        col("project_id", Kind::Int8),
        col("project_key", Kind::Text),
        col("issue_type", Kind::Text),
        col("issue_type_id", Kind::Text),
        col("is_subtask", Kind::Bool),
        col("status", Kind::Text),
        col("status_id", Kind::Text),
        col("status_category", Kind::Text),
        col("priority", Kind::Text),
        col("resolution", Kind::Text),
        col("assignee_account_id", Kind::Text),
        col("reporter_account_id", Kind::Text),
        col("creator_account_id", Kind::Text),
        col("parent_id", Kind::Int8),
        col("parent_key", Kind::Text),
        col("summary", Kind::Text),
        col("labels", Kind::TextArray),
        col("created", Kind::Timestamptz),
        col("updated", Kind::Timestamptz),
        col("resolved_at", Kind::Timestamptz),
        col("due_date", Kind::Date),
        col("raw", Kind::Jsonb),
    ],
    version: Some("updated"),
    soft_delete: true,
};

/// A row of `jira.issues`.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueRow {
    pub id: i64,
    pub key: String,
    pub project_id: i64,
    pub project_key: Option<String>,
    pub issue_type: Option<String>,
    pub issue_type_id: Option<String>,
    pub is_subtask: Option<bool>,
    pub status: Option<String>,
    pub status_id: Option<String>,
    pub status_category: Option<String>,
    pub priority: Option<String>,
    pub resolution: Option<String>,
    pub assignee_account_id: Option<String>,
    pub reporter_account_id: Option<String>,
    pub creator_account_id: Option<String>,
    pub parent_id: Option<i64>,
    pub parent_key: Option<String>,
    pub summary: Option<String>,
    /// A JSON array of strings.
    pub labels: Value,
    pub created: Option<DateTime<Utc>>,
    pub updated: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub due_date: Option<NaiveDate>,
    /// The issue as Jira sent it, kept as the text received.
    pub raw: RawJson,
}

impl Row for IssueRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.key.into(),
            self.project_id.into(),
            self.project_key.into(),
            self.issue_type.into(),
            self.issue_type_id.into(),
            self.is_subtask.into(),
            self.status.into(),
            self.status_id.into(),
            self.status_category.into(),
            self.priority.into(),
            self.resolution.into(),
            self.assignee_account_id.into(),
            self.reporter_account_id.into(),
            self.creator_account_id.into(),
            self.parent_id.into(),
            self.parent_key.into(),
            self.summary.into(),
            Cell::TextArray(self.labels),
            self.created.into(),
            self.updated.into(),
            self.resolved_at.into(),
            self.due_date.into(),
            Cell::RawJson(self.raw),
        ]
    }
}

/// The issues checkpoint: one cursor per project, keyed by project id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssuesCheckpoint {
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectCursor>,
}

impl Checkpoint for IssuesCheckpoint {
    const STREAM: &'static str = "issues";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProjectCursor {
    #[serde(default)]
    pub key: String,
    /// Every issue updated before this instant has been committed.
    #[serde(default)]
    pub mark: Option<DateTime<Utc>>,
    /// A scan of this project has reached its last page at least once.
    #[serde(default)]
    pub complete: bool,
    /// A split scan under way: its ranges and how far each has been read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitScan>,
}

/// A checkpoint change that sets the cursor of project `id`.
fn set_project(id: i64, cursor: ProjectCursor) -> CheckpointWrite {
    checkpoint::update::<IssuesCheckpoint>(move |cp| {
        cp.projects.insert(id.to_string(), cursor);
        Ok(())
    })
}

/// A checkpoint change that sets range `index` of project `id`'s split scan.
fn set_range(id: i64, index: usize, range: RangeCursor) -> CheckpointWrite {
    checkpoint::update::<IssuesCheckpoint>(move |cp| {
        let slot = cp
            .projects
            .get_mut(&id.to_string())
            .and_then(|p| p.split.as_mut())
            .and_then(|split| split.ranges.get_mut(index))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the issues checkpoint has no range {index} of a split scan of project {id}; \
                     run `jira-sync sync --once --full --stream issues` to rebuild it"
                )
            })?;
        *slot = range;
        Ok(())
    })
}

/// The issues stream: per project, from its cursor, every `sync.issues_interval_secs`.
pub struct Issues {
    schedule: Schedule,
    /// How much each incremental query re-reads before a mark.
    overlap: Duration,
    /// Records that ride on the pages ([`IssueChild`]).
    children: Vec<Arc<dyn IssueChild>>,
    /// Issues of this site are in quarantine: pages take out those they store.
    quarantined: AtomicBool,
}

impl Issues {
    pub fn new(settings: &Settings, children: Vec<Arc<dyn IssueChild>>) -> Issues {
        let sync = &settings.sync;
        Issues {
            schedule: Schedule::every(sync.issues, sync.issues_interval_secs),
            overlap: Duration::seconds(i64::try_from(sync.issue_overlap_secs).unwrap_or(120)),
            children,
            quarantined: AtomicBool::new(false),
        }
    }

    /// The children the site serves.
    fn children_served<'a>(
        &'a self,
        ctx: &StreamContext,
    ) -> impl Iterator<Item = &'a Arc<dyn IssueChild>> {
        let flavor = ctx.flavor();
        self.children
            .iter()
            .filter(move |c| c.unavailable(flavor).is_none())
    }

    /// The filter (JQL without `ORDER BY`) of one project's scan: bounded by the project, and
    /// by the cursor when there is one (its date written in `zone`, the API user's).
    pub fn project_filter(&self, zone: Tz, project_id: i64, cursor: &ProjectCursor) -> String {
        self.filter_for(zone, &format!("project = {project_id}"), cursor)
    }

    fn filter_for(&self, zone: Tz, scope: &str, cursor: &ProjectCursor) -> String {
        match cursor.mark {
            Some(mark) => format!(
                "{scope} AND updated >= \"{}\"",
                jql_lower_bound_literal(mark - self.overlap, zone)
            ),
            None => scope.to_owned(),
        }
    }

    /// Every project the run reads, with its cursor (none in a full run).
    async fn work(
        &self,
        ctx: &StreamContext,
        run: &Run<'_>,
    ) -> anyhow::Result<Vec<(ProjectRow, ProjectCursor)>> {
        let checkpoint = match run.mode {
            Mode::Full => IssuesCheckpoint::default(),
            Mode::Incremental => load_checkpoint(ctx).await?.unwrap_or_default(),
        };
        let projects = list_selected(ctx, run.counters).await?.rows;
        Ok(projects
            .into_iter()
            .map(|p| {
                let cursor = checkpoint
                    .projects
                    .get(&p.id.to_string())
                    .cloned()
                    .unwrap_or_default();
                (p, cursor)
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Stream for Issues {
    fn name(&self) -> &'static str {
        IssuesCheckpoint::STREAM
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Full when there is no checkpoint yet or when asked.
    async fn mode(&self, ctx: &StreamContext, force_full: bool) -> anyhow::Result<Mode> {
        if force_full {
            return Ok(Mode::Full);
        }
        Ok(match load_checkpoint(ctx).await? {
            Some(cp) if !cp.projects.is_empty() => Mode::Incremental,
            _ => Mode::Full,
        })
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        // A full scan into a table without any of the site's issues stands for the census.
        let first_scan = run.mode == Mode::Full && !ctx.store.has_rows(&TABLE, &ctx.site).await?;
        let began = Utc::now();
        let zone = ctx.user_zone().await?;
        let started = ctx.client.server_now();
        for child in &self.children {
            if let Some(why) = child.unavailable(ctx.flavor()) {
                tracing::warn!(
                    records = child.name(),
                    "{} are not synced: {why}",
                    child.name()
                );
            }
        }
        if run.mode == Mode::Full {
            // A full sync reads every issue's records again.
            ctx.store.forget_child_marks(&ctx.site).await?;
        }
        self.retry_quarantined(ctx, run).await?;
        let work = self.work(ctx, run).await?;
        match ctx.flavor() {
            // Data Center has no /search/jql: its issues come from /rest/api/2/search.
            Flavor::DataCenter => dc::run(self, ctx, zone, run, &work).await?,
            Flavor::Cloud => {
                let room_kib = buffer_kib(ctx.max_in_flight);
                let scan = Scan {
                    stream: self,
                    ctx,
                    zone,
                    counters: run.counters,
                    progress: run.progress,
                    started: ctx.client.server_now(),
                    slots: Semaphore::new(page_slots(ctx.max_in_flight)),
                    work: Semaphore::new(work_slots(ctx.max_in_flight)),
                    buffer: Semaphore::new(room_kib),
                    buffer_kib: room_kib,
                    page_kib: std::sync::atomic::AtomicUsize::new(INITIAL_PAGE_KIB),
                };
                // The total for progress comes when Jira has counted; the scan does not wait.
                let counting = self.count_total(ctx, zone, &work, run.counters, run.progress);
                let ((), scanned) = tokio::join!(counting, scan_projects(&scan, &work));
                scanned?;
            }
        }
        // The records of issues the pages did not hold, in this same run.
        let served: Vec<Arc<dyn IssueChild>> = self.children_served(ctx).cloned().collect();
        let child_run = ChildRun { run, started };
        super::children::catch_up(&served, ctx, &child_run).await?;
        if first_scan {
            super::census::record_first_scan(ctx, began).await?;
        }
        Ok(StreamStatus::Done)
    }

    fn cursor(&self, checkpoint: Option<&Value>) -> Cursor {
        let Some(value) = checkpoint else {
            return Cursor::not_yet();
        };
        let Ok(cp) = checkpoint::decode::<IssuesCheckpoint>(value.clone()) else {
            return Cursor::unreadable();
        };
        let oldest = cp.projects.values().filter_map(|p| p.mark).min();
        let unfinished = cp.projects.values().filter(|p| !p.complete).count();
        let mut note = format!("oldest mark of {} projects", cp.projects.len());
        if unfinished > 0 {
            let _ = write!(note, "; {unfinished} not yet read to the end");
        }
        Cursor::new(oldest, note)
    }

    fn rows(&self, site: &str) -> Option<Count> {
        Some(Count {
            table: &TABLE,
            owner: site.to_owned(),
            which: Which::Live,
        })
    }

    /// Readable wherever projects are: the same listing answers for both.
    async fn probe(&self, probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        Some(probe_listing(probe).await.map(|listing| match listing {
            Ok(_) => Availability::Readable { detail: None },
            Err(refusal) => refusal.unreadable(super::projects::BROWSE_FIX),
        }))
    }
}

/// What the parallel work of one run shares.
pub(crate) struct Scan<'a> {
    pub stream: &'a Issues,
    pub ctx: &'a StreamContext,
    /// The API user's zone, read at the start of the run: JQL dates are written in it.
    pub zone: Tz,
    pub counters: &'a RunCounters,
    pub progress: &'a dyn Progress,
    /// When this run started: its marks never pass `started - LAG`.
    pub started: DateTime<Utc>,
    /// One per page being fetched, parsed or written ([`page_slots`]).
    pub(super) slots: Semaphore,
    /// One per page being decoded, parsed or written ([`work_slots`]): a fetched page waits
    /// for one as compact JSON text, several times smaller than its decoded values.
    work: Semaphore,
    /// The pages held (fetched, waiting, being written), bounded by their size in KiB
    /// ([`buffer_kib`]) rather than by their number: a page of 100 full issues is 1 MB on
    /// one site and 5 MB on another.
    pub(super) buffer: Semaphore,
    /// The largest page seen so far, in KiB: what a request reserves before it is sent.
    page_kib: std::sync::atomic::AtomicUsize,
    /// The size of `buffer`.
    buffer_kib: usize,
}

impl Scan<'_> {
    fn overlap(&self) -> Duration {
        self.stream.overlap
    }

    /// More ranges than page slots, so slots freed by a range that ends go to another.
    fn max_ranges(&self) -> usize {
        self.ctx.max_in_flight.max(1) * 2
    }

    async fn slot(&self) -> anyhow::Result<SemaphorePermit<'_>> {
        Ok(self.slots.acquire().await?)
    }

    /// Reserves room in the page buffer for the answer of a request about to be sent: as much
    /// as the largest page seen so far.
    async fn reserve(&self) -> anyhow::Result<SemaphorePermit<'_>> {
        let kib = self
            .page_kib
            .load(Ordering::Relaxed)
            .clamp(1, PAGE_BUFFER_KIB);
        Ok(self.buffer.acquire_many(kib as u32).await?)
    }

    /// Sets the reservation `held` to the `bytes` of the page received: what it reserved too
    /// much goes back; what it lacks is taken if free (never waited for: the page is in memory
    /// already, and the next reservations grow to its size).
    fn settle<'a>(&'a self, held: &mut SemaphorePermit<'a>, bytes: usize) {
        let kib = bytes.div_ceil(1024).clamp(1, self.buffer_kib);
        self.page_kib.fetch_max(kib, Ordering::Relaxed);
        let have = held.num_permits();
        if kib < have {
            drop(held.split(have - kib));
        } else if kib > have
            && let Ok(more) = self.buffer.try_acquire_many((kib - have) as u32)
        {
            held.merge(more);
        }
    }

    /// Fetches one full-field page of `jql` and commits its rows, its issues' child records
    /// and the checkpoint change `write` makes of the page (its latest `updated`, whether it is
    /// the last) in one transaction. Returns the next page's token, `None` after the last page.
    async fn page(
        &self,
        jql: &str,
        token: Option<&str>,
        seen: &mut HashSet<i64>,
        write: impl FnOnce(Option<DateTime<Utc>>, bool) -> anyhow::Result<CheckpointWrite>,
    ) -> anyhow::Result<Option<String>> {
        let mut body = json!({ "jql": jql, "fields": ["*all"], "maxResults": PAGE_SIZE });
        if let Some(t) = token {
            body["nextPageToken"] = json!(t);
        }
        let clock = std::time::Instant::now;
        let queued = clock();
        let _slot = self.slot().await?;
        let mut held = self.reserve().await?;
        let sent = clock();
        self.counters.request();
        let ctx = self.ctx;
        let body = ctx
            .client
            .post_body("/rest/api/3/search/jql", &body)
            .await?;
        self.settle(&mut held, body.len());
        let fetched = clock();
        let _work = self.work.acquire().await?;
        let working = clock();
        let page: SearchPage = body.decode()?;
        drop(body);
        let last = page.is_last.unwrap_or(false) || page.next_page_token.is_none();
        if !last {
            no_progress_guard(jql, token, &page)?;
        }
        let (count, written) = self
            .stream
            .write_page(ctx, self.counters, page.issues, |rows| {
                seen.extend(rows.iter().map(|r| r.id));
                write(rows.iter().map(|r| r.updated).max(), last)
            })
            .await?;
        // Those set aside were read too: they wait in quarantine, not for a fetch by id.
        seen.extend(
            written
                .set_aside
                .iter()
                .filter_map(|id| id.parse::<i64>().ok()),
        );
        let seen = count;
        let (rows, set_aside) = (written.rows, written.set_aside.len());
        self.counters.page(seen, written, self.progress);
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_millis() as u64;
        tracing::debug!(
            seen,
            written = rows,
            set_aside,
            last,
            slot_wait_ms = ms(queued, sent),
            request_ms = ms(sent, fetched),
            work_wait_ms = ms(fetched, working),
            write_ms = ms(working, clock()),
            "issues page committed"
        );
        Ok(if last { None } else { page.next_page_token })
    }
}

impl Issues {
    /// Commits a page of issues as Jira sent them: their rows, their children's rows, the
    /// records that cannot be read (set aside) and the checkpoint change `checkpoint` makes of
    /// the rows, in one transaction. Returns the issues seen and what the write did.
    async fn write_page(
        &self,
        ctx: &StreamContext,
        counters: &RunCounters,
        issues: Vec<RawRecord>,
        checkpoint: impl FnOnce(&[IssueRow]) -> anyhow::Result<CheckpointWrite>,
    ) -> anyhow::Result<(usize, Written)> {
        let seen = issues.len();
        let children: Vec<Arc<dyn IssueChild>> = self.children_served(ctx).cloned().collect();
        let embedded: Vec<&str> = children
            .iter()
            .flat_map(|c| c.embedded_in().iter().copied())
            .collect();
        let read = read_issues(IssuesCheckpoint::STREAM, issues, &embedded);
        let (rows, heads): (Vec<IssueRow>, Vec<Value>) = read.rows.into_iter().unzip();
        let mut page = PageWrite::empty(IssuesCheckpoint::STREAM);
        page.set_aside = read.set_aside;
        page.resolves = self.quarantined.load(Ordering::Relaxed);
        for child in &children {
            child.collect(ctx, counters, &heads, &mut page).await?;
        }
        drop(heads);
        page.checkpoint = checkpoint(&rows)?;
        page.batches.insert(0, Batch::of(&ctx.site, rows));
        let written = ctx.store.write_page(&ctx.site, page).await?;
        Ok((seen, written))
    }

    /// Squares a scan of more than one page with a listing of the same filter: search pages
    /// are not a snapshot, so an issue updated, moved or deleted between two pages shifts the
    /// ones behind it, and the scan skips as many.
    ///
    /// The issues `listed` that the scan did not read (`seen`) are fetched and written. When
    /// the listing was made after the scan (`listed_after`), the issues it read that the
    /// listing no longer shows are fetched too: those Jira still shows (moved to another
    /// project) are written, and those it no longer shows are marked deleted, unless they are
    /// more than [`MAX_VANISHED_MID_SCAN`] (that looks like lost permission; the census, with
    /// its own guards, decides).
    pub(super) async fn reconcile(
        &self,
        ctx: &StreamContext,
        counters: &RunCounters,
        progress: &dyn Progress,
        listed: &HashSet<i64>,
        seen: &HashSet<i64>,
        listed_after: bool,
    ) -> anyhow::Result<()> {
        let mut missed: Vec<i64> = listed.difference(seen).copied().collect();
        let mut vanished: Vec<i64> = match listed_after {
            true => seen.difference(listed).copied().collect(),
            false => Vec::new(),
        };
        if vanished.len() > MAX_VANISHED_MID_SCAN {
            tracing::warn!(
                issues = vanished.len(),
                "more issues left the scan's filter while it ran than one edit explains; the                  census decides whether they are deleted"
            );
            vanished.clear();
        }
        if missed.is_empty() && vanished.is_empty() {
            return Ok(());
        }
        tracing::info!(
            missed = missed.len(),
            vanished = vanished.len(),
            "the scan's pages shifted under it (issues changed, moved or were deleted between              pages): fetching the issues it did not read and those it read that have gone"
        );
        missed.extend(&vanished);
        missed.sort_unstable();
        let (found, errored) = fetch_issues(ctx, &missed, counters).await?;
        let present: HashSet<i64> = found
            .iter()
            .filter_map(|raw| identify(raw).0.parse().ok())
            .collect();
        let (count, written) = self
            .write_page(ctx, counters, found, |_| Ok(CheckpointWrite::None))
            .await?;
        counters.page(count, written, progress);
        let gone: Vec<i64> = vanished
            .into_iter()
            .filter(|id| !present.contains(id) && !errored.contains(id))
            .collect();
        if !gone.is_empty() {
            let children: Vec<_> = self
                .children
                .iter()
                .flat_map(|c| c.tables().iter())
                .collect();
            let marked = ctx
                .store
                .mark_issues_deleted(&TABLE, &ctx.site, &gone, &children)
                .await?;
            tracing::info!(marked, "issues deleted while the scan ran marked deleted");
        }
        Ok(())
    }

    /// Fetches the issues held in quarantine again and writes those that can be read now;
    /// those Jira no longer shows leave quarantine (there is nothing to store).
    async fn retry_quarantined(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<()> {
        let held = ctx
            .store
            .quarantined(&ctx.site, IssuesCheckpoint::STREAM)
            .await?;
        self.quarantined.store(!held.is_empty(), Ordering::Relaxed);
        let ids: Vec<i64> = held
            .iter()
            .filter_map(|q| q.record_id.parse().ok())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(
            issues = ids.len(),
            "retrying the issues held in jira.quarantine"
        );
        let (found, _errored) = fetch_issues(ctx, &ids, run.counters).await?;
        let returned: std::collections::HashSet<String> =
            found.iter().map(|raw| identify(raw).0).collect();
        let (seen, written) = self
            .write_page(ctx, run.counters, found, |_| Ok(CheckpointWrite::None))
            .await?;
        run.counters.page(seen, written, run.progress);
        let gone: Vec<String> = held
            .into_iter()
            .map(|q| q.record_id)
            .filter(|id| !returned.contains(id))
            .collect();
        if !gone.is_empty() {
            ctx.store
                .drop_quarantined(&ctx.site, IssuesCheckpoint::STREAM, &gone)
                .await?;
        }
        Ok(())
    }

    /// Sums Jira's approximate counts so progress can show done/total: one count per chunk of
    /// projects, bounded by the oldest cursor among them. Failures only cost the total.
    async fn count_total(
        &self,
        ctx: &StreamContext,
        zone: Tz,
        work: &[(ProjectRow, ProjectCursor)],
        counters: &RunCounters,
        progress: &dyn Progress,
    ) {
        // A full scan of projects whose listing carried their issue counts: those are the total.
        let hinted: Option<Vec<usize>> = work
            .iter()
            .map(|(p, c)| c.mark.is_none().then(|| issue_count_hint(p)).flatten())
            .collect();
        if let Some(counts) = hinted {
            progress.add_total(counts.iter().sum::<usize>() as u64);
            return;
        }
        let queries: Vec<String> = work
            .chunks(COUNT_CHUNK)
            .map(|chunk| {
                let ids: Vec<String> = chunk.iter().map(|(p, _)| p.id.to_string()).collect();
                let oldest = chunk.iter().map(|(_, c)| c.mark).min().flatten();
                let bound = ProjectCursor {
                    mark: oldest,
                    ..ProjectCursor::default()
                };
                let filter =
                    self.filter_for(zone, &format!("project in ({})", ids.join(", ")), &bound);
                format!("{filter}{ORDER}")
            })
            .collect();
        let counts = futures::stream::iter(queries.into_iter().map(|jql| async move {
            counters.request();
            ctx.client
                .post::<ApproximateCount>(
                    "/rest/api/3/search/approximate-count",
                    &json!({ "jql": jql }),
                )
                .await
                .map(|c| c.count.max(0) as u64)
                .unwrap_or(0)
        }))
        .buffer_unordered(ctx.max_in_flight.max(1))
        .collect::<Vec<u64>>()
        .await;
        progress.add_total(counts.iter().sum());
    }
}

/// Fails a search that does not move on: a next page token equal to the one just sent, or an
/// empty page that says more follow. A server that pages so would be followed forever.
pub(super) fn no_progress_guard(
    jql: &str,
    sent: Option<&str>,
    page: &SearchPage,
) -> anyhow::Result<()> {
    let repeated = sent.is_some() && page.next_page_token.as_deref() == sent;
    if repeated || page.issues.is_empty() {
        anyhow::bail!(
            "the search for `{jql}` answered a page that does not move on ({}): the server does \
             not page as Jira does; the cursor stays at the last committed page",
            match repeated {
                true => "the same page token again",
                false => "no issue, yet more pages",
            }
        );
    }
    Ok(())
}

/// The most the pages an issues scan holds at once (received, waiting, being written) may
/// take, in KiB of JSON text: 32 MiB, ten pages of 100 issues of 30 KB ([`buffer_kib`]).
const PAGE_BUFFER_KIB: usize = 32 * 1024;

/// The room for pages an issues scan holds at once: 2 MiB of JSON text a request in flight,
/// from 8 MiB to [`PAGE_BUFFER_KIB`]. Requests wait for room before they are sent, so on a
/// site of heavy issues (3 MB a page) fewer pages are fetched ahead than `max_in_flight`
/// allows; with pages of a megabyte the room is rarely short.
fn buffer_kib(max_in_flight: usize) -> usize {
    (max_in_flight.max(1) * 2 * 1024).clamp(8 * 1024, PAGE_BUFFER_KIB)
}
/// What the first request reserves, before any page has been seen.
const INITIAL_PAGE_KIB: usize = 1024;

/// Pages fetched, parsed or written at once: half as many again as requests in flight, so the
/// requests stay busy while pages are written. A fetched page waits for a [`work_slots`] slot
/// as JSON text (about 0.6 MB for 100 full issues).
fn page_slots(max_in_flight: usize) -> usize {
    let in_flight = max_in_flight.max(1);
    in_flight + in_flight / 2
}

/// Pages decoded, parsed or written at once: enough to keep the database busy (it writes a
/// page in tens of milliseconds, parsing takes a few), few enough that their decoded values
/// stay within tens of megabytes. More than four measured no faster and used more memory.
fn work_slots(max_in_flight: usize) -> usize {
    max_in_flight.div_ceil(2).clamp(1, 4)
}

/// Reads every project. Every project may start: the page slots decide what runs.
///
/// The full scans of more than one page are squared with one listing of all their projects
/// at the end, made after every one of them ([`Issues::reconcile`]): a few pages of keys for
/// the whole site rather than one listing a project.
async fn scan_projects(
    scan: &Scan<'_>,
    work: &[(ProjectRow, ProjectCursor)],
) -> anyhow::Result<()> {
    let scanned = futures::future::try_join_all(
        work.iter()
            .map(|(project, cursor)| sync_project(scan, project, cursor)),
    )
    .await?;
    let mut projects = Vec::new();
    let mut seen = HashSet::new();
    for ((project, _), read) in work.iter().zip(scanned) {
        if let Some(read) = read {
            projects.push(project.id.to_string());
            seen.extend(read);
        }
    }
    if projects.is_empty() {
        return Ok(());
    }
    let mut listed = HashSet::new();
    for chunk in projects.chunks(COUNT_CHUNK) {
        let filter = format!("project in ({})", chunk.join(", "));
        listed.extend(list_ids(scan.ctx, scan.counters, &filter, Some(&scan.slots)).await?);
    }
    scan.stream
        .reconcile(scan.ctx, scan.counters, scan.progress, &listed, &seen, true)
        .await
}

pub(super) async fn load_checkpoint(
    ctx: &StreamContext,
) -> anyhow::Result<Option<IssuesCheckpoint>> {
    checkpoint::load::<IssuesCheckpoint>(ctx).await
}

/// Reads a project from its cursor to the end: page after page, or, when the first page shows
/// there is much more, as a split scan. A split scan left by an earlier run is resumed.
/// Returns the issues read by a full scan of more than one page, for the caller to square
/// with a listing made after it ([`scan_projects`]); every other scan is squared here.
#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn sync_project(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
) -> anyhow::Result<Option<HashSet<i64>>> {
    if let Some(split) = &cursor.split {
        // Resumed from an earlier run: what that run listed is not known here any more.
        finish_split(scan, project, cursor, split).await?;
        return Ok(None);
    }
    let filter = scan.stream.project_filter(scan.zone, project.id, cursor);
    let jql = format!("{filter}{ORDER}");
    let ceiling = scan.started - LAG;
    let mut current = ProjectCursor {
        key: project.key.clone(),
        split: None,
        ..cursor.clone()
    };
    // A full scan of a project the listing says is big goes straight to the split: its first
    // page would only be read again by the ranges.
    if cursor.mark.is_none()
        && let Some(count) = issue_count_hint(project).filter(|&n| split::worth_splitting(n))
        && let Some((split, planned)) =
            split::try_split(scan, project, &current, Some(count)).await?
    {
        finish_planned_split(scan, project, &current, &split, planned).await?;
        return Ok(None);
    }
    // A full scan of a project the listing says is small needs no count to know it.
    let known_small = cursor.mark.is_none() && issue_count_hint(project).is_some();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    loop {
        let next = scan
            .page(&jql, token.as_deref(), &mut seen, |page_max, last| {
                current.mark = current.mark.max(page_max.map(|m| m.min(ceiling)));
                current.complete = cursor.complete || last;
                Ok(set_project(project.id, current.clone()))
            })
            .await?;
        let Some(next) = next else {
            break;
        };
        if token.is_none()
            && !known_small
            && let Some((split, planned)) = split::try_split(scan, project, &current, None).await?
        {
            finish_planned_split(scan, project, &current, &split, planned).await?;
            return Ok(None);
        }
        token = Some(next);
    }
    // A scan of more than one page can miss an issue: search pages are not a snapshot.
    if token.is_none() {
        return Ok(None);
    }
    if cursor.mark.is_none() {
        return Ok(Some(seen));
    }
    let listed: HashSet<i64> = list_ids(scan.ctx, scan.counters, &filter, Some(&scan.slots))
        .await?
        .into_iter()
        .collect();
    scan.stream
        .reconcile(scan.ctx, scan.counters, scan.progress, &listed, &seen, true)
        .await?;
    Ok(None)
}

/// The project's issue count as its listing reported it (`insight.totalIssueCount`), if it did.
fn issue_count_hint(project: &ProjectRow) -> Option<usize> {
    let count = project.raw.pointer("/insight/totalIssueCount")?.as_u64()?;
    usize::try_from(count).ok()
}

/// Reads a split scan's ranges to their ends, then moves the project's mark past all of them.
/// Returns the issues the ranges read in this run.
async fn finish_split(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    split: &SplitScan,
) -> anyhow::Result<HashSet<i64>> {
    let (done, seen) = split::run_ranges(scan, project, cursor, split).await?;
    let write = set_project(project.id, done);
    scan.ctx
        .store
        .save_checkpoint(&scan.ctx.site, write)
        .await?;
    Ok(seen)
}

/// [`finish_split`] for a split planned in this run: the issues its listing found that the
/// ranges did not read (one read earlier was updated or deleted between pages, and the rest
/// shifted) are fetched and written too.
async fn finish_planned_split(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    split: &SplitScan,
    planned: HashSet<i64>,
) -> anyhow::Result<()> {
    let seen = finish_split(scan, project, cursor, split).await?;
    scan.stream
        .reconcile(
            scan.ctx,
            scan.counters,
            scan.progress,
            &planned,
            &seen,
            false,
        )
        .await
}

/// The fields of an issue its typed columns are read from.
const TYPED_FIELDS: &[&str] = &[
    "project",
    "issuetype",
    "status",
    "priority",
    "resolution",
    "assignee",
    "reporter",
    "creator",
    "parent",
    "summary",
    "labels",
    "created",
    "updated",
    "resolutiondate",
    "duedate",
];

/// Reads issues (IssueBeans) as Jira sent them into rows whose `raw` is the text received,
/// each with a value holding only what the rows and the children read: `id`, `key` and the
/// typed fields, plus the fields `embedded` (the children's lists). The rest of each issue
/// (descriptions, custom fields: most of its size) is never decoded. Issues that cannot be
/// read are set aside.
pub fn read_issues(
    stream: &'static str,
    issues: Vec<RawRecord>,
    embedded: &[&str],
) -> Read<(IssueRow, Value)> {
    let mut fields: Vec<&str> = TYPED_FIELDS.to_vec();
    fields.extend(embedded);
    let read = read_heads(
        stream,
        "issue",
        issues,
        &["id", "key"],
        &fields,
        issue_fields,
    );
    Read {
        rows: read
            .rows
            .into_iter()
            .map(|(mut row, head, raw)| {
                row.raw = RawJson(raw);
                (row, head)
            })
            .collect(),
        set_aside: read.set_aside,
    }
}

/// Reads one issue (an IssueBean with all fields) into a row.
pub fn parse_issue(value: &Value) -> Result<IssueRow, ParseError> {
    let mut row = issue_fields(value)?;
    let raw = serde_json::value::to_raw_value(value).map_err(|e| ParseError {
        entity: "issue",
        record: row.key.clone(),
        field: "(the whole record)".to_owned(),
        detail: format!("cannot be written as JSON again: {e}"),
    })?;
    row.raw = RawJson(raw);
    Ok(row)
}

/// The typed columns of an issue; `raw` is left `null`.
fn issue_fields(value: &Value) -> Result<IssueRow, ParseError> {
    let r = Record::new("issue", value, &["key", "id"]);
    Ok(IssueRow {
        id: r.req_id("id")?,
        key: r.req_str("key")?,
        project_id: r.req_id("fields.project.id")?,
        project_key: r.opt_str("fields.project.key")?,
        issue_type: r.opt_str("fields.issuetype.name")?,
        issue_type_id: r.opt_str("fields.issuetype.id")?,
        is_subtask: r.opt_bool("fields.issuetype.subtask")?,
        status: r.opt_str("fields.status.name")?,
        status_id: r.opt_str("fields.status.id")?,
        status_category: r.opt_str("fields.status.statusCategory.key")?,
        priority: r.opt_str("fields.priority.name")?,
        resolution: r.opt_str("fields.resolution.name")?,
        // Data Center users have no `accountId`: their `key` stands in, as in `jira.users`.
        assignee_account_id: r.opt_user_id("fields.assignee")?,
        reporter_account_id: r.opt_user_id("fields.reporter")?,
        creator_account_id: r.opt_user_id("fields.creator")?,
        parent_id: r.opt_id("fields.parent.id")?,
        parent_key: r.opt_str("fields.parent.key")?,
        summary: r.opt_str("fields.summary")?,
        labels: r.str_array("fields.labels")?,
        created: r.opt_ts("fields.created")?,
        updated: r.req_ts("fields.updated")?,
        resolved_at: r.opt_ts("fields.resolutiondate")?,
        due_date: r.opt_date("fields.duedate")?,
        raw: RawJson(serde_json::value::RawValue::NULL.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_with_nulls_and_string_ids_parses() {
        let v = json!({
            "id": "10234", "key": "OPS-17",
            "fields": {
                "project": {"id": "10000", "key": "OPS"},
                "issuetype": {"id": "10001", "name": "Task", "subtask": false},
                "status": {"id": "3", "name": "In Progress",
                           "statusCategory": {"id": 4, "key": "indeterminate"}},
                "priority": null, "resolution": null, "assignee": null,
                "created": "2025-02-27T16:03:11.512+0100",
                "updated": "2025-03-04T10:15:27.120+0100",
                "labels": ["security"], "duedate": "2025-04-01",
                "customfield_10042": {"id": "10210", "value": "Platform"}
            }
        });
        let row = parse_issue(&v).expect("parses");
        assert_eq!(row.id, 10234);
        assert_eq!(row.project_id, 10000);
        assert_eq!(row.priority, None);
        assert_eq!(row.status_category.as_deref(), Some("indeterminate"));
        assert_eq!(row.updated.to_rfc3339(), "2025-03-04T09:15:27.120+00:00");
        let raw: Value = serde_json::from_str(row.raw.0.get()).expect("raw is JSON");
        assert_eq!(raw["fields"]["customfield_10042"]["value"], "Platform");
    }

    #[test]
    fn data_center_users_in_an_issue_read_as_their_keys() {
        let user = |key: &str, name: &str| {
            json!({"self": format!("https://jira.example.com/rest/api/2/user?username={name}"),
                   "key": key, "name": name, "displayName": name, "active": true,
                   "emailAddress": format!("{name}@example.com"), "timeZone": "Europe/Berlin"})
        };
        let v = json!({
            "id": "10500", "key": "DC-3",
            "fields": {
                "project": {"id": "10000", "key": "DC"},
                "assignee": user("JIRAUSER10100", "fred"),
                "reporter": user("JIRAUSER10200", "andrew"),
                "creator": user("JIRAUSER10200", "andrew"),
                "updated": "2025-03-04T10:15:27.120+0100"
            }
        });
        let row = parse_issue(&v).expect("parses");
        assert_eq!(row.assignee_account_id.as_deref(), Some("JIRAUSER10100"));
        assert_eq!(row.reporter_account_id.as_deref(), Some("JIRAUSER10200"));
        assert_eq!(row.creator_account_id.as_deref(), Some("JIRAUSER10200"));
    }

    #[test]
    fn an_assignee_without_any_id_names_the_issue_and_field() {
        let v = json!({
            "id": "10501", "key": "DC-4",
            "fields": {
                "project": {"id": "10000"}, "assignee": {"name": "fred", "displayName": "Fred"},
                "updated": "2025-03-04T10:15:27.120+0100"
            }
        });
        let text = parse_issue(&v).expect_err("no user id").to_string();
        assert!(text.contains("key=DC-4"), "{text}");
        assert!(text.contains("fields.assignee.accountId"), "{text}");
    }

    #[test]
    fn the_status_cursor_is_the_oldest_project_mark() {
        let stream = Issues {
            schedule: Schedule::every(true, 300),
            overlap: Duration::seconds(120),
            children: Vec::new(),
            quarantined: AtomicBool::new(false),
        };
        let value = json!({"version": 1, "projects": {
            "1": {"key": "A", "mark": "2026-01-02T00:00:00Z", "complete": true},
            "2": {"key": "B", "mark": "2026-01-01T00:00:00Z", "complete": false},
        }});
        let cursor = stream.cursor(Some(&value));
        assert_eq!(
            cursor.at.map(|c| c.to_rfc3339()),
            Some("2026-01-01T00:00:00+00:00".to_owned())
        );
        let note = cursor.note.unwrap_or_default();
        assert!(
            note.contains("2 projects") && note.contains("1 not yet"),
            "{note}"
        );
        assert_eq!(stream.cursor(None), Cursor::not_yet());
        let other_version = json!({"version": 7, "projects": {}});
        assert_eq!(stream.cursor(Some(&other_version)), Cursor::unreadable());
    }

    #[test]
    fn an_issue_without_updated_names_the_record_and_field() {
        let v = json!({"id": "5", "key": "OPS-5", "fields": {"project": {"id": 1}}});
        let err = parse_issue(&v).expect_err("updated is required");
        let text = err.to_string();
        assert!(text.contains("key=OPS-5"), "{text}");
        assert!(text.contains("fields.updated"), "{text}");
    }
}
