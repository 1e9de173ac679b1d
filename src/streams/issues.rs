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

mod split;

use super::parse::{ParseError, Record};
use super::projects::list_selected;
use super::{Mode, RunCounters, StreamContext, StreamStatus};
use crate::jira::model::{ApproximateCount, SearchPage};
use crate::jira::time::jql_lower_bound_literal;
use crate::store::CheckpointWrite;
use crate::store::rows::{IssueRow, ProjectRow};
use crate::sync::progress::Progress;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::sync::{Semaphore, SemaphorePermit};

pub use split::{RangeCursor, SplitScan};

pub const STREAM: &str = "issues";
/// Full-field pages: Jira caps them near 100 whatever is asked.
const PAGE_SIZE: u32 = 100;
/// Search is eventually consistent: the mark never passes `scan start - LAG`.
pub(super) const LAG: Duration = Duration::minutes(5);
const CHECKPOINT_VERSION: u32 = 1;
/// Projects per approximate-count query (keeps the JQL short).
const COUNT_CHUNK: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssuesCheckpoint {
    pub version: u32,
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectCursor>,
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

/// The mode a run will use: full when there is no checkpoint yet or when asked.
pub async fn mode(ctx: &StreamContext, force_full: bool) -> anyhow::Result<Mode> {
    if force_full {
        return Ok(Mode::Full);
    }
    Ok(match load_checkpoint(ctx).await? {
        Some(cp) if !cp.projects.is_empty() => Mode::Incremental,
        _ => Mode::Full,
    })
}

/// What the parallel work of one run shares.
pub(crate) struct Scan<'a> {
    pub ctx: &'a StreamContext,
    pub counters: &'a RunCounters,
    pub progress: &'a Progress,
    /// When this run started: its marks never pass `started - LAG`.
    pub started: DateTime<Utc>,
    /// One per page being fetched, parsed or written ([`page_slots`]).
    pub(super) slots: Semaphore,
    /// One per page being decoded, parsed or written ([`work_slots`]): a fetched page waits
    /// for one as compact JSON text, several times smaller than its decoded values.
    work: Semaphore,
}

impl Scan<'_> {
    fn overlap(&self) -> Duration {
        Duration::seconds(i64::try_from(self.ctx.sync.issue_overlap_secs).unwrap_or(120))
    }

    /// More ranges than page slots, so slots freed by a range that ends go to another.
    fn max_ranges(&self) -> usize {
        self.ctx.max_in_flight.max(1) * 2
    }

    async fn slot(&self) -> anyhow::Result<SemaphorePermit<'_>> {
        Ok(self.slots.acquire().await?)
    }

    /// Fetches one full-field page of `jql` and commits its rows together with the checkpoint
    /// change `write` makes of the page (its latest `updated`, whether it is the last).
    /// Returns the next page's token, `None` after the last page.
    async fn page(
        &self,
        jql: &str,
        token: Option<&str>,
        write: impl FnOnce(Option<DateTime<Utc>>, bool) -> anyhow::Result<CheckpointWrite>,
    ) -> anyhow::Result<Option<String>> {
        let mut body = json!({ "jql": jql, "fields": ["*all"], "maxResults": PAGE_SIZE });
        if let Some(t) = token {
            body["nextPageToken"] = json!(t);
        }
        let clock = std::time::Instant::now;
        let queued = clock();
        let _slot = self.slot().await?;
        let sent = clock();
        self.counters.request();
        let ctx = self.ctx;
        let body = ctx
            .client
            .post_body("/rest/api/3/search/jql", &body)
            .await?;
        let fetched = clock();
        let _work = self.work.acquire().await?;
        let working = clock();
        let page: SearchPage = body.decode()?;
        drop(body);
        let last = page.is_last.unwrap_or(false) || page.next_page_token.is_none();
        let rows = page
            .issues
            .into_iter()
            .map(into_issue_row)
            .collect::<Result<Vec<_>, _>>()?;
        let checkpoint = write(rows.iter().map(|r| r.updated).max(), last)?;
        let seen = rows.len();
        let parsed = clock();
        let written = ctx
            .store
            .write_issue_page(&ctx.site, rows, &checkpoint)
            .await?;
        self.counters.page(seen, written, self.progress);
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_millis() as u64;
        tracing::debug!(
            seen,
            written,
            last,
            slot_wait_ms = ms(queued, sent),
            request_ms = ms(sent, fetched),
            work_wait_ms = ms(fetched, working),
            parse_ms = ms(working, parsed),
            write_ms = ms(parsed, clock()),
            "issues page committed"
        );
        Ok(if last { None } else { page.next_page_token })
    }
}

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

/// A checkpoint change that sets a project's cursor (`sub: None`) or a path inside it.
pub(super) fn page_path(
    project: &ProjectRow,
    sub: Option<&[&str]>,
    value: Value,
) -> CheckpointWrite {
    let mut path = vec!["projects".to_string(), project.id.to_string()];
    path.extend(sub.into_iter().flatten().map(|s| (*s).to_string()));
    CheckpointWrite::SetPath {
        stream: STREAM,
        base: json!({ "version": CHECKPOINT_VERSION, "projects": {} }),
        path,
        value,
    }
}

pub async fn run(
    ctx: &StreamContext,
    mode: Mode,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    // Data Center has no /search/jql: its issues come from /rest/api/2/search.
    if ctx.client.is_data_center() {
        return super::dc_search::run(ctx, mode, counters, progress).await;
    }
    let scan = Scan {
        ctx,
        counters,
        progress,
        started: Utc::now(),
        slots: Semaphore::new(page_slots(ctx.max_in_flight)),
        work: Semaphore::new(work_slots(ctx.max_in_flight)),
    };
    let checkpoint = match mode {
        Mode::Full => IssuesCheckpoint::default(),
        Mode::Incremental => load_checkpoint(ctx).await?.unwrap_or_default(),
    };
    let projects = list_selected(ctx, counters).await?;
    let work: Vec<(ProjectRow, ProjectCursor)> = projects
        .into_iter()
        .map(|p| {
            let cursor = checkpoint
                .projects
                .get(&p.id.to_string())
                .cloned()
                .unwrap_or_default();
            (p, cursor)
        })
        .collect();
    // The total for progress comes when Jira has counted; the scan does not wait for it.
    let counting = count_total(ctx, &work, counters, progress);
    let ((), scanned) = tokio::join!(counting, scan_projects(&scan, &work));
    scanned?;
    Ok(StreamStatus::Done)
}

/// Reads every project. Every project may start: the page slots decide what runs.
async fn scan_projects(
    scan: &Scan<'_>,
    work: &[(ProjectRow, ProjectCursor)],
) -> anyhow::Result<()> {
    futures::stream::iter(work.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(None, |(project, cursor)| {
            sync_project(scan, project, cursor)
        })
        .await
}

pub(super) async fn load_checkpoint(
    ctx: &StreamContext,
) -> anyhow::Result<Option<IssuesCheckpoint>> {
    super::load_versioned_checkpoint(ctx, STREAM, CHECKPOINT_VERSION).await
}

/// The JQL for one project: bounded by the project, and by the cursor when there is one.
pub fn project_jql(ctx: &StreamContext, project_id: i64, cursor: &ProjectCursor) -> String {
    jql_for(ctx, &format!("project = {project_id}"), cursor)
}

fn jql_for(ctx: &StreamContext, scope: &str, cursor: &ProjectCursor) -> String {
    let overlap = Duration::seconds(i64::try_from(ctx.sync.issue_overlap_secs).unwrap_or(120));
    match cursor.mark {
        Some(mark) => format!(
            "{scope} AND updated >= \"{}\" ORDER BY updated ASC, key ASC",
            jql_lower_bound_literal(mark - overlap, ctx.user_zone)
        ),
        None => format!("{scope} ORDER BY updated ASC, key ASC"),
    }
}

/// Sums Jira's approximate counts so progress can show done/total: one count per chunk of
/// projects, bounded by the oldest cursor among them. Failures only cost the total.
async fn count_total(
    ctx: &StreamContext,
    work: &[(ProjectRow, ProjectCursor)],
    counters: &RunCounters,
    progress: &Progress,
) {
    let queries: Vec<String> = work
        .chunks(COUNT_CHUNK)
        .map(|chunk| {
            let ids: Vec<String> = chunk.iter().map(|(p, _)| p.id.to_string()).collect();
            let oldest = chunk.iter().map(|(_, c)| c.mark).min().flatten();
            let bound = ProjectCursor {
                mark: oldest,
                ..ProjectCursor::default()
            };
            jql_for(ctx, &format!("project in ({})", ids.join(", ")), &bound)
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

/// Reads a project from its cursor to the end: page after page, or, when the first page shows
/// there is much more, as a split scan. A split scan left by an earlier run is resumed.
#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn sync_project(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
) -> anyhow::Result<()> {
    if let Some(split) = &cursor.split {
        return finish_split(scan, project, cursor, split).await;
    }
    let jql = project_jql(scan.ctx, project.id, cursor);
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
        && let Some(split) = split::try_split(scan, project, &current, Some(count)).await?
    {
        return finish_split(scan, project, &current, &split).await;
    }
    let mut token: Option<String> = None;
    loop {
        let next = scan
            .page(&jql, token.as_deref(), |page_max, last| {
                current.mark = current.mark.max(page_max.map(|m| m.min(ceiling)));
                current.complete = cursor.complete || last;
                Ok(page_path(project, None, serde_json::to_value(&current)?))
            })
            .await?;
        let Some(next) = next else {
            return Ok(());
        };
        if token.is_none()
            && let Some(split) = split::try_split(scan, project, &current, None).await?
        {
            return finish_split(scan, project, &current, &split).await;
        }
        token = Some(next);
    }
}

/// The project's issue count as its listing reported it (`insight.totalIssueCount`), if it did.
fn issue_count_hint(project: &ProjectRow) -> Option<usize> {
    let count = project.raw.pointer("/insight/totalIssueCount")?.as_u64()?;
    usize::try_from(count).ok()
}

/// Reads a split scan's ranges to their ends, then moves the project's mark past all of them.
async fn finish_split(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    split: &SplitScan,
) -> anyhow::Result<()> {
    let done = split::run_ranges(scan, project, cursor, split).await?;
    let write = page_path(project, None, serde_json::to_value(&done)?);
    scan.ctx.store.save_checkpoint(&scan.ctx.site, &write).await
}

/// Reads one issue (an IssueBean with all fields) into a row.
pub fn parse_issue(value: &Value) -> Result<IssueRow, ParseError> {
    into_issue_row(value.clone())
}

/// [`parse_issue`], keeping `value` itself as the row's `raw` rather than a copy: a page of
/// full issues is megabytes of JSON values.
pub fn into_issue_row(value: Value) -> Result<IssueRow, ParseError> {
    let mut row = issue_fields(&value)?;
    row.raw = value;
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
        raw: Value::Null,
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
        assert_eq!(row.raw["fields"]["customfield_10042"]["value"], "Platform");
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
    fn an_issue_without_updated_names_the_record_and_field() {
        let v = json!({"id": "5", "key": "OPS-5", "fields": {"project": {"id": 1}}});
        let err = parse_issue(&v).expect_err("updated is required");
        let text = err.to_string();
        assert!(text.contains("key=OPS-5"), "{text}");
        assert!(text.contains("fields.updated"), "{text}");
    }
}
