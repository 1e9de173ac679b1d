//! Projects: `/rest/api/3/project/search`, live and archived, paged to `isLast`; on Data Center,
//! which lacks that endpoint, `/rest/api/2/project?includeArchived=true`, one unpaged array. A
//! full refresh each run. Projects that no longer appear are soft-deleted, unless so many vanish
//! at once that lost permission is the likelier cause.

use super::parse::{ParseError, Read, Record, identify, read_records};
use super::{
    Availability, Probe, Refusal, Run, RunCounters, Schedule, Stream, StreamContext, StreamStatus,
};
use crate::jira::model::{ProjectPage, RawRecord};
use crate::jira::{Flavor, JiraError};
use crate::settings::Settings;
use crate::store::status::{Count, Which};
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, CheckpointWrite, PageWrite, Row};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;

/// Jira's cap on `maxResults` for this endpoint.
const PAGE_SIZE: usize = 100;
/// Expands a dashboard needs: description, lead, the issue-count insight and the URL.
const EXPAND: &str = "description,lead,insight,url";
/// Data Center has no insight expand.
const DC_EXPAND: &str = "description,lead,url";
/// Pages of projects asked for at once on the word of the first page's `total`.
const MAX_PAGES_AHEAD: usize = 20;
/// Share of known projects that may vanish in one run before we suspect lost permission.
const MAX_VANISH_SHARE: f64 = 0.5;

/// `jira.projects`.
pub static TABLE: Table = Table {
    name: "jira.projects",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("key", Kind::Text),
        col("name", Kind::Text),
        col("project_type", Kind::Text),
        col("style", Kind::Text),
        col("simplified", Kind::Bool),
        col("category_id", Kind::Int8),
        col("category_name", Kind::Text),
        col("lead_account_id", Kind::Text),
        col("is_private", Kind::Bool),
        col("archived", Kind::Bool),
        col("archived_at", Kind::Timestamptz),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: true,
};

/// A row of `jira.projects`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub project_type: Option<String>,
    pub style: Option<String>,
    pub simplified: Option<bool>,
    pub category_id: Option<i64>,
    pub category_name: Option<String>,
    pub lead_account_id: Option<String>,
    pub is_private: Option<bool>,
    pub archived: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub raw: Value,
}

impl Row for ProjectRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.key.into(),
            self.name.into(),
            self.project_type.into(),
            self.style.into(),
            self.simplified.into(),
            self.category_id.into(),
            self.category_name.into(),
            self.lead_account_id.into(),
            self.is_private.into(),
            self.archived.into(),
            self.archived_at.into(),
            self.raw.into(),
        ]
    }
}

/// The projects stream: a full refresh every `sync.projects_interval_secs`.
pub struct Projects {
    schedule: Schedule,
}

impl Projects {
    pub fn new(settings: &Settings) -> Projects {
        let sync = &settings.sync;
        Projects {
            schedule: Schedule::every(sync.projects, sync.projects_interval_secs),
        }
    }
}

#[async_trait::async_trait]
impl Stream for Projects {
    fn name(&self) -> &'static str {
        "projects"
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let listed = list_selected(ctx, run.counters).await?;
        let quarantined = !ctx
            .store
            .quarantined(&ctx.site, "projects")
            .await?
            .is_empty();
        run.progress.add_total(listed.rows.len() as u64);
        // Projects that cannot be read are still there: they are not marked deleted.
        let mut seen: Vec<i64> = listed.rows.iter().map(|r| r.id).collect();
        seen.extend(
            listed
                .set_aside
                .iter()
                .filter_map(|s| s.record_id.parse::<i64>().ok()),
        );
        let mut set_aside = listed.set_aside;
        let mut chunks = listed.rows.chunks(PAGE_SIZE).peekable();
        if chunks.peek().is_none() && !set_aside.is_empty() {
            let batch = Batch::new(&TABLE, &ctx.site);
            let mut page = PageWrite::new(self.name(), batch, CheckpointWrite::None);
            page.set_aside = std::mem::take(&mut set_aside);
            let written = ctx.store.write_page(&ctx.site, page).await?;
            run.counters.page(0, written, run.progress);
        }
        for chunk in chunks {
            let batch = Batch::of(&ctx.site, chunk.to_vec());
            let mut page = PageWrite::new(self.name(), batch, CheckpointWrite::None);
            page.set_aside = std::mem::take(&mut set_aside);
            page.resolves = quarantined;
            let written = ctx.store.write_page(&ctx.site, page).await?;
            run.counters.page(chunk.len(), written, run.progress);
        }
        mark_vanished(ctx, &seen).await?;
        Ok(StreamStatus::Done)
    }

    fn rows(&self, site: &str) -> Option<Count> {
        Some(Count {
            table: &TABLE,
            owner: site.to_owned(),
            which: Which::Live,
        })
    }

    async fn probe(&self, probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        Some(probe_listing(probe).await.map(|listing| match listing {
            Ok(total) => Availability::Readable {
                detail: total.map(|n| format!("{n} projects visible")),
            },
            Err(refusal) => refusal.unreadable(BROWSE_FIX),
        }))
    }
}

/// What to do when projects (and so issues) cannot be read.
pub const BROWSE_FIX: &str = "grant the account Browse Projects in the projects' permission \
                              schemes (e.g. through a project role or group)";

/// The projects listing as `check` probes it: how many projects are visible (when the answer
/// says), or why the account may not list them. One request per check: the issues stream's
/// probe asks the same.
pub async fn probe_listing(probe: &Probe<'_>) -> Result<Result<Option<u64>, Refusal>, JiraError> {
    if !probe.can_browse {
        let reason = "the account lacks Browse Projects (BROWSE_PROJECTS) in every project";
        return Ok(Err(Refusal::new(reason)));
    }
    let listing = probe
        .listing
        .get_or_try_init(|| async {
            // Data Center lists projects in one array at `/project`; Cloud pages `/project/search`.
            match probe.client.flavor() {
                Flavor::DataCenter => probe.request("/rest/api/2/project", &[]).await,
                Flavor::Cloud => {
                    let one = [("maxResults", "1".to_owned())];
                    probe.request("/rest/api/3/project/search", &one).await
                }
            }
        })
        .await?;
    Ok(match listing {
        Ok(page) => {
            let total = match page {
                Value::Array(projects) => Some(projects.len() as u64),
                page => page.get("total").and_then(Value::as_u64),
            };
            if total == Some(0) {
                probe.warn(
                    "no project is visible to this account: there will be no issues to sync"
                        .to_owned(),
                );
            }
            Ok(total)
        }
        Err(reason) => Err(reason.clone()),
    })
}

/// Every project the account can see (live and archived) that the config selects, once each,
/// and those that cannot be read (set aside). The issues stream and the census use it too, to
/// know which projects to search (they leave out those that cannot be read).
pub async fn list_selected(
    ctx: &StreamContext,
    counters: &RunCounters,
) -> anyhow::Result<Read<ProjectRow>> {
    let values = match ctx.flavor() {
        Flavor::DataCenter => list_data_center(ctx, counters).await?,
        Flavor::Cloud => {
            // Live and archived projects are listed at the same time.
            let (mut live, archived) = futures::future::try_join(
                list_status(ctx, counters, "live"),
                list_status(ctx, counters, "archived"),
            )
            .await?;
            live.extend(archived);
            live
        }
    };
    let mut read = read_records("projects", "project", values, |v| parse_project(&v));
    read.rows.retain(|row| ctx.projects.selects(&row.key));
    read.rows.sort_by_key(|p| p.id);
    read.rows.dedup_by_key(|p| p.id);
    Ok(read)
}

/// Every project of one `status`, paged to `isLast`. When the first page tells the total, the
/// pages after it are asked for at once, stepping by as many as the first page held (the page
/// size Jira applied). Should one of them come back short of a full page before the end (the
/// total grew or shrank meanwhile), paging goes on one page after another from there, so
/// nothing is skipped; rows seen twice are deduplicated by the caller.
///
/// `total` is a claim, not a plan: at most [`MAX_PAGES_AHEAD`] pages are asked for at once on
/// its word, and a page that brings no project not seen before ends the listing with an error
/// rather than a loop.
async fn list_status(
    ctx: &StreamContext,
    counters: &RunCounters,
    status: &str,
) -> anyhow::Result<Vec<RawRecord>> {
    let first = fetch_page(ctx, counters, status, 0).await?;
    let step = first.values.len();
    let mut start_at = step;
    let mut last = is_last_page(&first);
    let mut values = first.values;
    if !last && let Some(total) = first.total.and_then(|t| usize::try_from(t).ok()) {
        let starts: Vec<usize> = (step..total)
            .step_by(step.max(1))
            .take(MAX_PAGES_AHEAD)
            .collect();
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
    let mut seen: HashSet<String> = values.iter().map(|v| identify(v).0).collect();
    while !last {
        let page = fetch_page(ctx, counters, status, start_at).await?;
        start_at += page.values.len();
        last = is_last_page(&page);
        let before = seen.len();
        seen.extend(page.values.iter().map(|v| identify(v).0));
        if seen.len() == before && !last {
            anyhow::bail!(
                "the {status} project listing at startAt={start_at} brought no project not seen \
                 before and does not end (isLast is false): the server does not page as Jira \
                 does; nothing was marked deleted"
            );
        }
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
) -> anyhow::Result<Vec<RawRecord>> {
    counters.request();
    let query = [
        ("includeArchived", "true".to_owned()),
        ("expand", DC_EXPAND.to_owned()),
    ];
    Ok(ctx.client.get("/rest/api/2/project", &query).await?)
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
    let (known, vanished) = ctx.store.count_missing(&TABLE, &ctx.site, seen).await?;
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
    let marked = ctx
        .store
        .mark_missing_deleted(&TABLE, &ctx.site, seen)
        .await?;
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
