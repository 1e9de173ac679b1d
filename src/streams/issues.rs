//! Issues: `POST /rest/api/3/search/jql`, one bounded query per project ordered by
//! `updated ASC, key ASC`, all fields, following `nextPageToken` to the end. Projects run in
//! parallel, bounded by `rate_limit.max_in_flight`.
//!
//! Checkpoint (`jira.sync_state`, stream `issues`): one cursor per project,
//! `{"version":1,"projects":{"<id>":{"key":..,"mark":..,"complete":..}}}`. The mark is
//! `min(max updated committed, scan start - lag)`, written with the page it covers; the next
//! run asks for `updated >= mark - overlap` in the API user's time zone, and the upsert by id
//! makes re-reading the overlap harmless.

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

pub const STREAM: &str = "issues";
/// Full-field pages: Jira caps them near 100 whatever is asked.
const PAGE_SIZE: u32 = 100;
/// Search is eventually consistent: the mark never passes `scan start - LAG`.
const LAG: Duration = Duration::minutes(5);
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
    let scan_start = Utc::now();
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
    count_total(ctx, &work, counters, progress).await;
    futures::stream::iter(work.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(ctx.max_in_flight.max(1), |(project, cursor)| {
            sync_project(ctx, project, cursor, scan_start, counters, progress)
        })
        .await?;
    Ok(StreamStatus::Done)
}

async fn load_checkpoint(ctx: &StreamContext) -> anyhow::Result<Option<IssuesCheckpoint>> {
    let Some(value) = ctx.store.load_checkpoint(&ctx.site, STREAM).await? else {
        return Ok(None);
    };
    let cp: IssuesCheckpoint = serde_json::from_value(value).map_err(|err| {
        anyhow::anyhow!(
            "the issues checkpoint in jira.sync_state is unreadable ({err}); run \
             `jira-sync sync --once --full --stream issues` to rebuild it"
        )
    })?;
    if cp.version != CHECKPOINT_VERSION {
        anyhow::bail!(
            "the issues checkpoint has version {} but this jira-sync reads version \
             {CHECKPOINT_VERSION}; run `jira-sync sync --once --full --stream issues`",
            cp.version
        );
    }
    Ok(Some(cp))
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

#[tracing::instrument(skip_all, fields(project = %project.key))]
async fn sync_project(
    ctx: &StreamContext,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    scan_start: DateTime<Utc>,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<()> {
    let jql = project_jql(ctx, project.id, cursor);
    let ceiling = scan_start - LAG;
    let mut max_updated = cursor.mark;
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "jql": jql, "fields": ["*all"], "maxResults": PAGE_SIZE });
        if let Some(t) = &token {
            body["nextPageToken"] = json!(t);
        }
        counters.request();
        let page: SearchPage = ctx.client.post("/rest/api/3/search/jql", &body).await?;
        let rows = page
            .issues
            .iter()
            .map(parse_issue)
            .collect::<Result<Vec<_>, _>>()?;
        let page_max = rows.iter().map(|r| r.updated).max();
        max_updated = max_updated.max(page_max);
        let last = page.is_last.unwrap_or(false) || page.next_page_token.is_none();
        let next = ProjectCursor {
            key: project.key.clone(),
            mark: max_updated.map(|m| m.min(ceiling)),
            complete: cursor.complete || last,
        };
        let write = CheckpointWrite::SetPath {
            stream: STREAM,
            base: json!({ "version": CHECKPOINT_VERSION, "projects": {} }),
            path: vec!["projects".to_string(), project.id.to_string()],
            value: serde_json::to_value(&next)?,
        };
        let seen = rows.len();
        let written = ctx.store.write_issue_page(&ctx.site, rows, &write).await?;
        counters.page(seen, written, progress);
        tracing::debug!(seen, written, last, "issues page committed");
        if last {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// Reads one issue (an IssueBean with all fields) into a row.
pub fn parse_issue(value: &Value) -> Result<IssueRow, ParseError> {
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
        assignee_account_id: r.opt_str("fields.assignee.accountId")?,
        reporter_account_id: r.opt_str("fields.reporter.accountId")?,
        creator_account_id: r.opt_str("fields.creator.accountId")?,
        parent_id: r.opt_id("fields.parent.id")?,
        parent_key: r.opt_str("fields.parent.key")?,
        summary: r.opt_str("fields.summary")?,
        labels: r.str_array("fields.labels")?,
        created: r.opt_ts("fields.created")?,
        updated: r.req_ts("fields.updated")?,
        resolved_at: r.opt_ts("fields.resolutiondate")?,
        due_date: r.opt_date("fields.duedate")?,
        raw: value.clone(),
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
    fn an_issue_without_updated_names_the_record_and_field() {
        let v = json!({"id": "5", "key": "OPS-5", "fields": {"project": {"id": 1}}});
        let err = parse_issue(&v).expect_err("updated is required");
        let text = err.to_string();
        assert!(text.contains("key=OPS-5"), "{text}");
        assert!(text.contains("fields.updated"), "{text}");
    }
}
