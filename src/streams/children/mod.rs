//! The records that belong to issues: change histories (`jira.changelogs`), comments
//! (`jira.comments`), worklogs (`jira.worklogs`) and links (`jira.issue_links`). Each is an
//! [`IssueChild`]: it rides on the issues stream's pages, and after the scans, in the same run,
//! reads what the pages could not hold.
//!
//! How each stays exact:
//! - **Links** come whole in every issue (`issuelinks`): a page writes them and marks deleted
//!   the links an issue no longer lists.
//! - **Comments** and **worklogs** come embedded, at most 20 with the total: an issue whose list
//!   is whole is written and pruned from the page; one whose list Jira truncated is left
//!   *behind* and read from its own endpoint after the scans. Adding, editing or deleting either
//!   moves the issue's `updated`, so the issue is read again and its list diffed. Worklogs also
//!   follow Jira's feeds of changed and deleted worklogs, with a cursor of their own.
//! - **Change histories** are never complete in an issue (search embeds none, bulk fetch 40):
//!   every issue whose `updated` moved past the version its histories were read at is behind,
//!   and `POST /changelog/bulkfetch` reads the histories of 1,000 of them a request.
//!
//! Which issues are behind is kept in the database (`jira.issue_child_sync`, see
//! [`crate::store::children`]) and committed with the issue pages, so a crash between a page
//! and its catch-up leaves the issues behind, and the next run completes them before it
//! reports success.

pub mod adf;
mod changelogs;
mod comments;
mod links;
mod worklogs;

pub use changelogs::Changelogs;
pub use comments::Comments;
pub use links::IssueLinks;
pub use worklogs::Worklogs;

use super::parse::identify;
use super::{ChildRun, IssueChild, RunCounters, StreamContext};
use crate::jira::model::{BulkFetchResult, RawRecord};
use crate::jira::time::parse_jira_timestamp_value;
use crate::settings::Settings;
use crate::store::PageWrite;
use crate::store::children::{Behind, Prune, Synced};
use crate::store::table::RawJson;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The children `[sync]` enables, in the order their catch-ups run.
pub fn enabled(settings: &Settings) -> Vec<Arc<dyn IssueChild>> {
    let sync = &settings.sync;
    let mut children: Vec<Arc<dyn IssueChild>> = Vec::new();
    if sync.issue_links {
        children.push(Arc::new(IssueLinks));
    }
    if sync.comments {
        children.push(Arc::new(Comments));
    }
    if sync.worklogs {
        children.push(Arc::new(Worklogs::default()));
    }
    if sync.changelogs {
        children.push(Arc::new(Changelogs));
    }
    children
}

/// An issue's id and `updated`, as a page shows them.
pub(crate) fn issue_version(issue: &Value) -> Option<(i64, DateTime<Utc>)> {
    let id = match &issue["id"] {
        Value::String(s) => s.parse().ok()?,
        other => other.as_i64()?,
    };
    let updated = parse_jira_timestamp_value(&issue["fields"]["updated"])?;
    Some((id, updated))
}

/// An embedded paged list (`fields.comment`: `{comments, total}`): its items, and whether they
/// are all there are. `None` when the issue does not carry the field.
fn embedded<'a>(issue: &'a Value, field: &str, items: &str) -> Option<(&'a [Value], bool)> {
    let list = issue.get("fields")?.get(field)?;
    let values = list.get(items)?.as_array()?;
    let total = list.get("total").and_then(Value::as_u64);
    let complete = total.is_none_or(|t| t as usize <= values.len());
    Some((values.as_slice(), complete))
}

/// The ids of a list of records (`id` as a string or a number); records without one are
/// left out.
fn record_ids(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .filter_map(|r| match &r["id"] {
            Value::String(s) => s.parse().ok(),
            other => other.as_i64(),
        })
        .collect()
}

/// Reads `records` (of one issue) into `batch` with `parse`; a record that cannot be read is
/// set aside for the child `name` with its text, and the issue stays behind, so it is read
/// again every run until the record can be stored. Returns the ids of every record (read or
/// not: they exist in Jira) and whether all were read.
fn read_into<R: crate::store::Row>(
    name: &'static str,
    records: &[Value],
    batch: &mut crate::store::Batch,
    page: &mut PageWrite,
    parse: impl Fn(&Value) -> Result<R, super::parse::ParseError>,
) -> (Vec<i64>, bool) {
    let mut all_read = true;
    for record in records {
        match parse(record) {
            Ok(row) => batch.push_row(row),
            Err(error) => {
                all_read = false;
                let Ok(raw) = serde_json::value::to_raw_value(record) else {
                    continue;
                };
                page.set_aside
                    .push(child_aside(name, &raw, error.to_string()));
            }
        }
    }
    (record_ids(records), all_read)
}

/// A record of child `name` that cannot be read, filed for quarantine and said in the log.
fn child_aside(
    name: &'static str,
    raw: &serde_json::value::RawValue,
    error: String,
) -> crate::store::SetAside {
    let aside = super::parse::set_aside(name, raw, error);
    tracing::warn!(
        child = name,
        record = %aside.record_id,
        error = %aside.error,
        "a record of an issue cannot be read; it is set aside in jira.quarantine and read again \
         on later runs"
    );
    aside
}

/// A decoded record as JSON text, for its row's `raw`: text takes a fraction of the room of a
/// decoded copy while the page waits to be written.
fn raw_text(value: &Value) -> RawJson {
    let text = serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
    RawJson(text)
}

/// [`read_into`] for records received as text: each is decoded with only its `keep` keys
/// (the rest skipped unparsed) and handed to `parse` with its text, which the row keeps as its
/// `raw` rather than a decoded copy.
fn read_raw_into<R: crate::store::Row>(
    name: &'static str,
    records: Vec<RawRecord>,
    keep: &[&str],
    batch: &mut crate::store::Batch,
    page: &mut PageWrite,
    parse: impl Fn(Value, RawJson) -> Result<R, super::parse::ParseError>,
) -> (Vec<i64>, bool) {
    let mut all_read = true;
    let mut ids = Vec::with_capacity(records.len());
    for raw in records {
        let (id, _) = identify(&raw);
        if let Ok(id) = id.parse() {
            ids.push(id);
        }
        let read = super::parse::head_of(&raw, keep, &[])
            .and_then(|head| parse(head, RawJson(raw.clone())).map_err(|e| e.to_string()));
        match read {
            Ok(row) => batch.push_row(row),
            Err(error) => {
                all_read = false;
                page.set_aside.push(child_aside(name, &raw, error));
            }
        }
    }
    (ids, all_read)
}

/// What an embedded child adds to a page for one issue: its rows are pushed by the caller;
/// this adds the prune and the mark.
fn mark_embedded(
    page: &mut PageWrite,
    child: &'static crate::store::children::ChildTable,
    name: &'static str,
    issue: (i64, DateTime<Utc>),
    ids: Vec<i64>,
    complete: bool,
) {
    if complete {
        match page
            .prunes
            .iter_mut()
            .find(|p| std::ptr::eq(p.child, child))
        {
            Some(prune) => {
                prune.issues.push(issue);
                prune.keep.extend(ids);
            }
            None => page.prunes.push(Prune {
                child,
                issues: vec![issue],
                keep: ids,
            }),
        }
    }
    page.synced.push(Synced {
        child: name,
        issue_id: issue.0,
        updated: issue.1,
        complete,
    });
}

/// After the issues stream's scans: issues never read with an embedding child's fields are
/// read again with them, then every child catches up. Every child runs even if one fails;
/// the run fails with the first failure, and the issues stay behind for the next run.
pub(super) async fn catch_up(
    children: &[Arc<dyn IssueChild>],
    ctx: &StreamContext,
    run: &ChildRun<'_>,
) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    if let Err(err) = read_embedded_again(children, ctx, run.run.counters).await {
        failures.push(err);
    }
    // At the same time: each reads its own endpoints and writes its own table and marks, and
    // one child's chain of requests (a chunk of histories at a time) leaves the slots idle
    // that the others fill.
    let caught = futures::future::join_all(children.iter().map(|c| c.catch_up(ctx, run))).await;
    for (child, result) in children.iter().zip(caught) {
        if let Err(err) = result {
            failures.push(err.context(format!("reading the {} of issues", child.name())));
        }
    }
    // The marks have just been rewritten: statistics that still describe the table as it was
    // would mislead the planner of `status`'s counts.
    ctx.store.analyze_child_marks().await;
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// An issue's id and the `updated` its row holds.
type IssueVersion = (i64, DateTime<Utc>);

/// Issue ids a bulk fetch asks for at once.
const BULK_ISSUES: usize = 100;

/// Issues whose records of an embedding child were never read (synced before the child
/// existed, or set aside from a page): fetched again, 100 at a time, with only the fields
/// the children read, and handed to each child as a page.
async fn read_embedded_again(
    children: &[Arc<dyn IssueChild>],
    ctx: &StreamContext,
    counters: &RunCounters,
) -> anyhow::Result<()> {
    let embedding: Vec<&Arc<dyn IssueChild>> = children
        .iter()
        .filter(|c| !c.embedded_in().is_empty())
        .collect();
    if embedding.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = embedding.iter().map(|c| c.name()).collect();
    let mut fields: Vec<&str> = embedding
        .iter()
        .flat_map(|c| c.embedded_in().iter().copied())
        .collect();
    fields.push("updated");
    let mut after = i64::MIN;
    let mut total = 0usize;
    loop {
        let mut batch = Vec::new();
        for name in &names {
            let behind = ctx
                .store
                .issues_behind(&ctx.site, name, Behind::NeverRead, after, BULK_ISSUES * 10)
                .await?;
            batch.extend(behind.into_iter().map(|(id, _)| id));
        }
        batch.sort_unstable();
        batch.dedup();
        batch.truncate(BULK_ISSUES * 10);
        let Some(&last) = batch.last() else {
            break;
        };
        after = last;
        total += batch.len();
        // The futures are made first: a stream of closures over borrowed chunks would not be
        // `Send` for every lifetime the caller's future needs.
        let requests: Vec<_> = batch
            .chunks(BULK_ISSUES)
            .map(|chunk| bulk_fetch_fields(ctx, counters, chunk, &fields))
            .collect();
        let fetched: Vec<Vec<Value>> = futures::stream::iter(requests)
            .buffer_unordered(ctx.max_in_flight.max(1))
            .try_collect()
            .await?;
        for issues in fetched {
            let mut page = PageWrite::empty("issues");
            for child in &embedding {
                child.collect(ctx, counters, &issues, &mut page).await?;
            }
            let written = ctx.store.write_page(&ctx.site, page).await?;
            counters.tally(written, &super::NoProgress, 0);
        }
    }
    if total > 0 {
        tracing::info!(
            issues = total,
            "read the comments, worklogs and links of issues synced before they were kept"
        );
    }
    Ok(())
}

/// `POST /rest/api/3/issue/bulkfetch` of `ids` with `fields`: the issues as values.
async fn bulk_fetch_fields(
    ctx: &StreamContext,
    counters: &RunCounters,
    ids: &[i64],
    fields: &[&str],
) -> anyhow::Result<Vec<Value>> {
    let body = json!({
        "issueIdsOrKeys": ids.iter().map(i64::to_string).collect::<Vec<_>>(),
        "fields": fields,
    });
    counters.request();
    let result: BulkFetchResult = ctx
        .client
        .post("/rest/api/3/issue/bulkfetch", &body)
        .await?;
    Ok(values(result.issues))
}

/// Raw records read as values; one that cannot be read is left out (the issues stream sets
/// issues it cannot read aside, and their records with them).
fn values(records: Vec<RawRecord>) -> Vec<Value> {
    records
        .iter()
        .filter_map(|raw| match super::parse::value_of(raw) {
            Ok(value) => Some(value),
            Err(error) => {
                let (id, _) = identify(raw);
                tracing::warn!(record = %id, %error, "a record of an issue cannot be read; left out");
                None
            }
        })
        .collect()
}

/// A page of `GET …/issue/{id}/comment` or `…/worklog`: offsets and a total.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetPage {
    #[serde(default)]
    total: Option<u64>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Every item of an issue's list endpoint (`comments` or `worklogs`), paged by `startAt`;
/// `None` when the issue is gone or hidden (404).
async fn read_list(
    ctx: &StreamContext,
    counters: &RunCounters,
    path: &str,
    items: &str,
    page_size: usize,
    extra: &[(&str, String)],
) -> anyhow::Result<Option<Vec<Value>>> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let mut query = vec![
            ("startAt", all.len().to_string()),
            ("maxResults", page_size.to_string()),
        ];
        query.extend(extra.iter().cloned());
        counters.request();
        let page: OffsetPage = match ctx.client.get(path, &query).await {
            Ok(page) => page,
            Err(crate::jira::JiraError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let got = page
            .rest
            .get(items)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // An empty page ends it, whatever `total` says (Jira's totals run ahead at times).
        if got.is_empty() {
            return Ok(Some(all));
        }
        all.extend(got);
        if page.total.is_some_and(|t| all.len() as u64 >= t) {
            return Ok(Some(all));
        }
    }
}

/// Catches up a child read from an issue's own list endpoint: every issue whose list is not
/// current is read whole (`read`), its records written and pruned, and its mark set at the
/// `updated` the issue row holds. Issues are taken in id order, so each is read once a run.
async fn catch_up_per_issue<F, Fut>(
    ctx: &StreamContext,
    run: &ChildRun<'_>,
    child: &'static crate::store::children::ChildTable,
    name: &'static str,
    read: F,
    rows: impl Fn(i64, &[Value], &mut crate::store::Batch, &mut PageWrite) -> (Vec<i64>, bool),
) -> anyhow::Result<()>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<Vec<Value>>>>,
{
    let mut after = i64::MIN;
    let mut issues = 0usize;
    loop {
        let behind = ctx
            .store
            .issues_behind(&ctx.site, name, Behind::NotCurrent, after, 50)
            .await?;
        let Some(&(last, _)) = behind.last() else {
            break;
        };
        after = last;
        issues += behind.len();
        let requests: Vec<_> = behind
            .into_iter()
            .map(|issue| {
                let fetch = read(issue.0);
                async move { Ok::<_, anyhow::Error>((issue, fetch.await?)) }
            })
            .collect();
        let lists: Vec<(IssueVersion, Option<Vec<Value>>)> = futures::stream::iter(requests)
            .buffer_unordered(ctx.max_in_flight.max(1))
            .try_collect()
            .await?;
        let mut batch = crate::store::Batch::new(child.table, &ctx.site);
        let mut page = PageWrite::empty(name);
        // Records of this child held in quarantine leave it once this page stores them.
        page.resolves = true;
        for (issue, list) in lists {
            // Gone or hidden: nothing to read; the census decides about the issue.
            let Some(list) = list else {
                page.synced.push(Synced {
                    child: name,
                    issue_id: issue.0,
                    updated: issue.1,
                    complete: true,
                });
                continue;
            };
            let (ids, all_read) = rows(issue.0, &list, &mut batch, &mut page);
            mark_embedded(&mut page, child, name, issue, ids, all_read);
        }
        page.batches.insert(0, batch);
        let written = ctx.store.write_page(&ctx.site, page).await?;
        run.run.counters.tally(written, &super::NoProgress, 0);
    }
    if issues > 0 {
        tracing::info!(
            child = name,
            issues,
            "read the lists Jira truncated in issue pages"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_list_is_complete_when_it_holds_its_total() {
        let issue = json!({"id": "7", "fields": {
            "updated": "2025-03-04T10:15:27.120+0100",
            "comment": {"comments": [{"id": "1"}, {"id": "2"}], "total": 2},
            "worklog": {"worklogs": [{"id": 3}], "total": 25},
        }});
        let (comments, whole) = embedded(&issue, "comment", "comments").expect("comments");
        assert!(whole && record_ids(comments) == vec![1, 2]);
        let (worklogs, whole) = embedded(&issue, "worklog", "worklogs").expect("worklogs");
        assert!(!whole && record_ids(worklogs) == vec![3]);
        assert!(embedded(&issue, "issuelinks", "links").is_none());
        let (id, updated) = issue_version(&issue).expect("version");
        assert_eq!(id, 7);
        assert_eq!(updated.to_rfc3339(), "2025-03-04T09:15:27.120+00:00");
    }
}
