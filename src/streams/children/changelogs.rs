//! Change histories (`jira.changelogs`), every one of every issue. Search embeds none and bulk
//! fetch at most 40, so after the scans every issue whose `updated` moved past the version its
//! histories were read at is read with `POST /rest/api/3/changelog/bulkfetch`: 1,000 issues a
//! request, up to 10,000 histories a page, pages merged by issue. Histories never change once
//! written; they leave only with their issue.

use super::{ChildRun, IssueChild, StreamContext, read_raw_into};
use crate::jira::Flavor;
use crate::jira::model::RawRecord;
use crate::store::children::ChildTable;
use crate::store::children::{Behind, Synced};
use crate::store::table::{Kind, Owner, RawJson, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use crate::streams::parse::{ParseError, Record};
use crate::streams::{NoProgress, RunCounters};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub static TABLE: Table = Table {
    name: "jira.changelogs",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("issue_id", Kind::Int8),
        col("author_account_id", Kind::Text),
        col("created", Kind::Timestamptz),
        col("items", Kind::Jsonb),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: true,
};

static CHILD: ChildTable = ChildTable {
    table: &TABLE,
    issue_columns: &["issue_id"],
};

const NAME: &str = "changelogs";
/// Issues per `changelog/bulkfetch` (Jira's maximum).
const ISSUES_PER_REQUEST: usize = 1000;
/// Histories per page asked for (Jira's maximum).
const HISTORIES_PER_PAGE: usize = 10_000;

/// A row of `jira.changelogs`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogRow {
    pub id: i64,
    pub issue_id: i64,
    pub author_account_id: Option<String>,
    pub created: DateTime<Utc>,
    /// Its `items` as Jira sent them.
    pub items: RawJson,
    /// The history as Jira sent it.
    pub raw: RawJson,
}

impl Row for ChangelogRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.issue_id.into(),
            self.author_account_id.into(),
            self.created.into(),
            Cell::RawJson(self.items),
            Cell::RawJson(self.raw),
        ]
    }
}

/// The keys of a history its typed columns are read from (`items` is kept as text, the rest
/// stays in `raw`, undecoded).
const READ_KEYS: &[&str] = &["id", "author", "created"];

/// A history's `items`, as received.
#[derive(Deserialize)]
struct Items<'a> {
    #[serde(borrow, default)]
    items: Option<&'a serde_json::value::RawValue>,
}

/// Reads one change history of issue `issue_id` (`value`: at least its [`READ_KEYS`]; `raw`:
/// the history as received). `created` comes as text or, from bulk fetch, as epoch
/// milliseconds; `items` are kept as Jira gives them, as text.
pub fn parse_history(
    value: Value,
    raw: RawJson,
    issue_id: i64,
) -> Result<ChangelogRow, ParseError> {
    let r = Record::new("change history", &value, &["id"]);
    let (id, author_account_id, created) = (
        r.req_id("id")?,
        r.opt_user_id("author")?,
        r.req_ts("created")?,
    );
    let listed: Items = serde_json::from_str(raw.0.get())
        .map_err(|e| r.wrong("items", "an array", &Value::String(e.to_string())))?;
    let items = match listed.items {
        Some(items) if items.get().trim_start().starts_with('[') => RawJson(items.to_owned()),
        Some(items) if items.get().trim() != "null" => {
            let shown = Value::String(items.get().chars().take(80).collect());
            return Err(r.wrong("items", "an array", &shown));
        }
        _ => RawJson(
            serde_json::value::RawValue::from_string("[]".to_owned())
                .map_err(|e| r.wrong("items", "an array", &Value::String(e.to_string())))?,
        ),
    };
    Ok(ChangelogRow {
        id,
        issue_id,
        author_account_id,
        created,
        items,
        raw,
    })
}

/// A page of `changelog/bulkfetch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkPage {
    issue_change_logs: Vec<IssueLogs>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueLogs {
    issue_id: Value,
    #[serde(default)]
    change_histories: Vec<RawRecord>,
}

/// The change histories child.
pub struct Changelogs;

#[async_trait::async_trait]
impl IssueChild for Changelogs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ChildTable] {
        std::slice::from_ref(&CHILD)
    }

    fn unavailable(&self, flavor: Flavor) -> Option<&'static str> {
        (flavor == Flavor::DataCenter)
            .then_some("Data Center has no changelog/bulkfetch; not read from it yet")
    }

    /// Pages carry no complete history: everything is read after the scans.
    async fn collect(
        &self,
        _ctx: &StreamContext,
        _counters: &RunCounters,
        _issues: &[Value],
        _page: &mut PageWrite,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    async fn catch_up(&self, ctx: &StreamContext, run: &ChildRun<'_>) -> anyhow::Result<()> {
        let counters = run.run.counters;
        // Which issues are behind, first (ids and versions only), then their histories, a
        // few requests of 1,000 issues at once: each answer is parsed and written while the
        // next ones are on their way.
        let mut chunks: Vec<Vec<(i64, DateTime<Utc>)>> = Vec::new();
        let mut after = i64::MIN;
        loop {
            let behind = ctx
                .store
                .issues_behind(
                    &ctx.site,
                    NAME,
                    Behind::NotCurrent,
                    after,
                    ISSUES_PER_REQUEST,
                )
                .await?;
            let Some(&(last, _)) = behind.last() else {
                break;
            };
            after = last;
            chunks.push(behind);
        }
        let issues: usize = chunks.iter().map(Vec::len).sum();
        // One at a time unless many requests may be in flight: each chunk's histories are
        // megabytes until written.
        let at_once = if ctx.max_in_flight >= 8 {
            CHUNKS_AT_ONCE
        } else {
            1
        };
        let histories: Vec<usize> = futures::stream::iter(chunks)
            .map(|behind| read_chunk(ctx, counters, behind))
            .buffer_unordered(at_once)
            .try_collect()
            .await?;
        let histories: usize = histories.into_iter().sum();
        if issues > 0 {
            tracing::info!(
                issues,
                histories,
                "read the change histories of changed issues"
            );
        }
        Ok(())
    }
}

/// Requests of [`ISSUES_PER_REQUEST`] issues in flight at once (each answer can hold 10,000
/// histories: a few megabytes).
const CHUNKS_AT_ONCE: usize = 2;

/// Reads the histories of the issues `behind` and writes them with the issues' marks in one
/// transaction; returns how many histories it read.
async fn read_chunk(
    ctx: &StreamContext,
    counters: &RunCounters,
    behind: Vec<(i64, DateTime<Utc>)>,
) -> anyhow::Result<usize> {
    let ids: Vec<i64> = behind.iter().map(|(id, _)| *id).collect();
    let by_issue = fetch(ctx, counters, &ids).await?;
    let mut page = PageWrite::empty(NAME);
    page.resolves = true;
    let mut batch = Batch::new(&TABLE, &ctx.site);
    let mut histories = 0;
    let mut by_issue = by_issue;
    for (id, updated) in behind {
        let list = by_issue.remove(&id).unwrap_or_default();
        histories += list.len();
        let (_, all_read) =
            read_raw_into(NAME, list, READ_KEYS, &mut batch, &mut page, |h, raw| {
                parse_history(h, raw, id)
            });
        page.synced.push(Synced {
            child: NAME,
            issue_id: id,
            updated,
            complete: all_read,
        });
    }
    page.batches.push(batch);
    let written = ctx.store.write_page(&ctx.site, page).await?;
    counters.tally(written, &NoProgress, 0);
    Ok(histories)
}

/// Every history of `ids` as received, merged by issue across pages.
async fn fetch(
    ctx: &StreamContext,
    counters: &RunCounters,
    ids: &[i64],
) -> anyhow::Result<BTreeMap<i64, Vec<RawRecord>>> {
    let mut by_issue: BTreeMap<i64, Vec<RawRecord>> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({
            "issueIdsOrKeys": ids.iter().map(i64::to_string).collect::<Vec<_>>(),
            "maxResults": HISTORIES_PER_PAGE,
        });
        if let Some(t) = &token {
            body["nextPageToken"] = json!(t);
        }
        counters.request();
        let page: BulkPage = ctx
            .client
            .post("/rest/api/3/changelog/bulkfetch", &body)
            .await?;
        for logs in page.issue_change_logs {
            let issue = match &logs.issue_id {
                Value::String(s) => s.parse().ok(),
                other => other.as_i64(),
            };
            let Some(issue) = issue else {
                anyhow::bail!(
                    "changelog/bulkfetch named an issue without a numeric id ({})",
                    logs.issue_id
                );
            };
            by_issue
                .entry(issue)
                .or_default()
                .extend(logs.change_histories);
        }
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) if Some(&next) == token.as_ref() => anyhow::bail!(
                "changelog/bulkfetch answered the page token it was sent: the server does not \
                 page as Jira does"
            ),
            Some(next) => token = Some(next),
            None => return Ok(by_issue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_from_bulk_fetch_reads_its_epoch_created_and_keeps_its_items() {
        let value = json!({
            "id": "88123",
            "author": {"accountId": "712020:0f1e2d3c-aaaa-bbbb-cccc-123456789abc"},
            "created": 1_741_079_727_120_i64,
            "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status",
                       "from": "10000", "fromString": "To Do", "to": "3", "toString": "In Progress"}]
        });
        let raw = |v: &Value| RawJson(serde_json::value::to_raw_value(v).expect("raw"));
        let row = parse_history(value.clone(), raw(&value), 10234).expect("reads");
        assert_eq!(row.id, 88123);
        assert_eq!(row.created.timestamp_millis(), 1_741_079_727_120);
        let items: Value = serde_json::from_str(row.items.0.get()).expect("items are JSON");
        assert_eq!(items[0]["toString"], "In Progress");
        assert_eq!(row.raw, raw(&value), "raw is the history as received");
        let text = json!({"id": "1", "created": "2025-03-04T10:15:27.120+0100", "items": []});
        assert!(parse_history(text.clone(), raw(&text), 1).is_ok());
        let odd = json!({"id": "1", "created": "2025-03-04T10:15:27.120+0100", "items": {"a": 1}});
        assert!(
            parse_history(odd.clone(), raw(&odd), 1).is_err(),
            "items must be an array"
        );
        let none = json!({"id": "1", "created": "2025-03-04T10:15:27.120+0100", "items": null});
        let row = parse_history(none.clone(), raw(&none), 1).expect("no items read as none");
        assert_eq!(row.items.0.get(), "[]");
        let bad = json!({"id": "1", "created": "soon"});
        assert!(parse_history(bad.clone(), raw(&bad), 1).is_err());
    }
}
