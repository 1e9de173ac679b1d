//! Worklogs (`jira.worklogs`). Issue pages embed the first 20 with the total
//! (`fields.worklog`): a whole list is written and diffed from its page, a truncated one is read
//! after the scans from `GET /rest/api/3/issue/{id}/worklog`. Between full syncs, Jira's
//! site-wide feeds of changed and deleted worklogs (`/worklog/updated`, `/worklog/deleted`, 1,000
//! a page) are followed with cursors of their own (checkpoint `worklogs`), the changed ones read
//! 1,000 at a time with `POST /worklog/list`. The feeds leave out the last minute; a full sync
//! starts them a minute before its scan, on Jira's clock, so nothing falls between the two.
//! On a full sync, when the feeds cost fewer requests than the truncated lists one by one, the
//! worklogs those lists left out come from the feeds instead ([`sweep`]).

use super::{
    ChildRun, IssueChild, StreamContext, adf, catch_up_per_issue, embedded, issue_version,
    mark_embedded, raw_text, read_into, read_list, values,
};
use crate::jira::Flavor;
use crate::store::children::{Behind, ChildTable, Synced};
use crate::store::table::{Kind, Owner, RawJson, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use crate::streams::checkpoint::{self, Checkpoint};
use crate::streams::parse::{ParseError, Record};
use crate::streams::{Mode, NoProgress, RunCounters};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

pub static TABLE: Table = Table {
    name: "jira.worklogs",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("issue_id", Kind::Int8),
        col("author_account_id", Kind::Text),
        col("update_author_account_id", Kind::Text),
        col("started", Kind::Timestamptz),
        col("time_spent_seconds", Kind::Int8),
        col("created", Kind::Timestamptz),
        col("updated", Kind::Timestamptz),
        col("comment_text", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
    version: Some("updated"),
    soft_delete: true,
};

static CHILD: ChildTable = ChildTable {
    table: &TABLE,
    issue_columns: &["issue_id"],
};

const NAME: &str = "worklogs";
/// Worklogs a page of the per-issue endpoint is asked for (Jira's default is 5,000).
const PAGE_SIZE: usize = 1000;
/// Ids per `POST /worklog/list`.
const LIST_SIZE: usize = 1000;
/// The feeds leave out what changed in the last minute.
const QUIET: Duration = Duration::minutes(1);

/// Where the worklog feeds were read to: epoch milliseconds on Jira's clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorklogsCheckpoint {
    #[serde(default)]
    pub updated_since: Option<i64>,
    #[serde(default)]
    pub deleted_since: Option<i64>,
}

impl Checkpoint for WorklogsCheckpoint {
    const STREAM: &'static str = NAME;
    const VERSION: u32 = 1;

    fn rebuilt_by() -> &'static str {
        "issues"
    }
}

/// A row of `jira.worklogs`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklogRow {
    pub id: i64,
    pub issue_id: i64,
    pub author_account_id: Option<String>,
    pub update_author_account_id: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub time_spent_seconds: Option<i64>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub comment_text: Option<String>,
    /// The record, written back as text: a decoded copy would take several times the room.
    pub raw: RawJson,
}

impl Row for WorklogRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.issue_id.into(),
            self.author_account_id.into(),
            self.update_author_account_id.into(),
            self.started.into(),
            self.time_spent_seconds.into(),
            self.created.into(),
            self.updated.into(),
            self.comment_text.into(),
            Cell::RawJson(self.raw),
        ]
    }
}

/// Reads one worklog; its issue is `issue_id` when known, else its own `issueId`.
pub fn parse_worklog(value: &Value, issue_id: Option<i64>) -> Result<WorklogRow, ParseError> {
    let r = Record::new("worklog", value, &["id"]);
    let issue_id = match issue_id {
        Some(id) => id,
        None => r.req_id("issueId")?,
    };
    let seconds = match r.get("timeSpentSeconds") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| r.wrong("timeSpentSeconds", "a number of seconds", v))?,
        ),
    };
    Ok(WorklogRow {
        id: r.req_id("id")?,
        issue_id,
        author_account_id: r.opt_user_id("author")?,
        update_author_account_id: r.opt_user_id("updateAuthor")?,
        started: r.opt_ts("started")?,
        time_spent_seconds: seconds,
        created: r.opt_ts("created")?,
        updated: r.opt_ts("updated")?,
        comment_text: r.opt_json("comment").as_ref().map(adf::to_text),
        raw: raw_text(value),
    })
}

/// A page of `/worklog/updated` or `/worklog/deleted`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedPage {
    #[serde(default)]
    values: Vec<FeedItem>,
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    last_page: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedItem {
    worklog_id: i64,
    #[serde(default)]
    updated_time: Option<i64>,
}

/// The worklogs child.
#[derive(Default)]
pub struct Worklogs {
    /// Worklogs the pages of this run said their issues have (their lists' `total`s).
    seen: AtomicU64,
    /// Of those, the ones truncated lists left out.
    missing: AtomicU64,
}

#[async_trait::async_trait]
impl IssueChild for Worklogs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ChildTable] {
        std::slice::from_ref(&CHILD)
    }

    fn embedded_in(&self) -> &'static [&'static str] {
        &["worklog"]
    }

    fn unavailable(&self, flavor: Flavor) -> Option<&'static str> {
        (flavor == Flavor::DataCenter).then_some("not read from Data Center sites yet")
    }

    async fn collect(
        &self,
        ctx: &StreamContext,
        _counters: &RunCounters,
        issues: &[Value],
        page: &mut PageWrite,
    ) -> anyhow::Result<()> {
        let mut batch = Batch::new(&TABLE, &ctx.site);
        for issue in issues {
            let Some(version) = issue_version(issue) else {
                continue;
            };
            let Some((worklogs, whole)) = embedded(issue, "worklog", "worklogs") else {
                continue;
            };
            let total = issue["fields"]["worklog"]["total"]
                .as_u64()
                .unwrap_or(worklogs.len() as u64);
            self.seen.fetch_add(total, Ordering::Relaxed);
            self.missing.fetch_add(
                total.saturating_sub(worklogs.len() as u64),
                Ordering::Relaxed,
            );
            let (ids, all_read) = read_into(NAME, worklogs, &mut batch, page, |worklog| {
                parse_worklog(worklog, Some(version.0))
            });
            mark_embedded(page, &CHILD, NAME, version, ids, whole && all_read);
        }
        page.batches.push(batch);
        Ok(())
    }

    async fn catch_up(&self, ctx: &StreamContext, run: &ChildRun<'_>) -> anyhow::Result<()> {
        let counters = run.run.counters;
        let seen = self.seen.swap(0, Ordering::Relaxed);
        let missing = self.missing.swap(0, Ordering::Relaxed);
        if run.run.mode == Mode::Full {
            sweep(ctx, run, seen, missing).await?;
        }
        catch_up_per_issue(
            ctx,
            run,
            &CHILD,
            NAME,
            |id| {
                let path = format!("/rest/api/3/issue/{id}/worklog");
                async move { read_list(ctx, counters, &path, "worklogs", PAGE_SIZE, &[]).await }
            },
            |issue_id, list, batch, page| {
                read_into(NAME, list, batch, page, |w| {
                    parse_worklog(w, Some(issue_id))
                })
            },
        )
        .await?;
        follow_feeds(ctx, run).await
    }
}

/// Reads the feeds from their cursors. Without cursors (a full sync, or the first run of
/// worklogs), the scan read every worklog: the cursors start a minute before it began.
async fn follow_feeds(ctx: &StreamContext, run: &ChildRun<'_>) -> anyhow::Result<()> {
    let stored = match run.run.mode {
        Mode::Full => None,
        Mode::Incremental => checkpoint::load::<WorklogsCheckpoint>(ctx).await?,
    };
    let (Some(updated_since), Some(deleted_since)) = (
        stored.as_ref().and_then(|c| c.updated_since),
        stored.as_ref().and_then(|c| c.deleted_since),
    ) else {
        let start = (run.started - QUIET).timestamp_millis();
        let fresh = WorklogsCheckpoint {
            updated_since: Some(start),
            deleted_since: Some(start),
        };
        let mut page = PageWrite::empty(NAME);
        page.checkpoint = checkpoint::replace(&fresh)?;
        ctx.store.write_page(&ctx.site, page).await?;
        return Ok(());
    };
    read_feed(ctx, run, Feed::Updated, updated_since).await?;
    read_feed(ctx, run, Feed::Deleted, deleted_since).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Updated,
    Deleted,
}

/// Reads one feed from `since` to its end, page by page, each page's worklogs written (or
/// marked deleted) with the feed's cursor in one transaction.
async fn read_feed(
    ctx: &StreamContext,
    run: &ChildRun<'_>,
    feed: Feed,
    mut since: i64,
) -> anyhow::Result<()> {
    let counters = run.run.counters;
    loop {
        let (items, until, last) = feed_page(ctx, run, feed, since).await?;
        let ids: Vec<i64> = items.iter().map(|v| v.worklog_id).collect();
        let mut write = PageWrite::empty(NAME);
        match feed {
            Feed::Updated => {
                // Only worklogs of issues this site's sync keeps (the feed is site-wide, and
                // the configuration may leave projects out); a worklog of an issue not synced
                // yet comes with that issue's page.
                let mut batch = Batch::new(&TABLE, &ctx.site);
                for chunk in ids.chunks(LIST_SIZE) {
                    let ours = list_ours(ctx, run, chunk).await?;
                    read_into(NAME, &ours, &mut batch, &mut write, |w| {
                        parse_worklog(w, None)
                    });
                }
                write.batches.push(batch);
                write.resolves = true;
            }
            Feed::Deleted => write.deletes.push((&TABLE, ids)),
        }
        let next = until;
        write.checkpoint = checkpoint::update::<WorklogsCheckpoint>(move |cp| {
            match feed {
                Feed::Updated => cp.updated_since = Some(next),
                Feed::Deleted => cp.deleted_since = Some(next),
            }
            Ok(())
        });
        let written = ctx.store.write_page(&ctx.site, write).await?;
        counters.tally(written, &NoProgress, 0);
        since = next;
        if last {
            return Ok(());
        }
    }
}

/// One page of a feed from `since`: its items, where it ends, and whether it is the last.
async fn feed_page(
    ctx: &StreamContext,
    run: &ChildRun<'_>,
    feed: Feed,
    since: i64,
) -> anyhow::Result<(Vec<FeedItem>, i64, bool)> {
    let path = match feed {
        Feed::Updated => "/rest/api/3/worklog/updated",
        Feed::Deleted => "/rest/api/3/worklog/deleted",
    };
    run.run.counters.request();
    let page: FeedPage = ctx
        .client
        .get(path, &[("since", since.to_string())])
        .await?;
    let last = page.last_page.unwrap_or(true) || page.values.is_empty();
    let until = page.until.unwrap_or(since).max(since);
    if !last && until == since {
        anyhow::bail!(
            "{path}?since={since} answered a full page that does not move on: the server \
             does not page as Jira does; the cursor stays at {since}"
        );
    }
    Ok((page.values, until, last))
}

/// The worklogs `ids` (at most [`LIST_SIZE`]) through `POST /worklog/list`, those of issues
/// this site's sync keeps only (the feeds are site-wide, and the configuration may leave
/// projects out; a worklog of an issue not synced yet comes with that issue's page).
async fn list_ours(
    ctx: &StreamContext,
    run: &ChildRun<'_>,
    ids: &[i64],
) -> anyhow::Result<Vec<Value>> {
    let body = json!({ "ids": ids });
    run.run.counters.request();
    let listed: Vec<crate::jira::model::RawRecord> =
        ctx.client.post("/rest/api/3/worklog/list", &body).await?;
    let listed = values(listed);
    let issues: Vec<i64> = listed.iter().filter_map(issue_of).collect();
    let kept = ctx.store.live_issue_ids(&ctx.site, &issues).await?;
    Ok(listed
        .into_iter()
        .filter(|w| issue_of(w).is_some_and(|id| kept.contains(&id)))
        .collect())
}

fn issue_of(worklog: &Value) -> Option<i64> {
    match &worklog["issueId"] {
        Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    }
}

/// Issues a sweep completes at most; the rest are read one by one.
const SWEEP_ISSUES: usize = 100_000;

/// A full sync's worklogs of the issues whose embedded lists Jira truncated, from the feeds
/// instead of one request per issue, when that takes fewer requests: the whole `updated` feed
/// (1,000 a page), `worklog/list` for the worklogs not already stored at the version the feed
/// names, and the whole `deleted` feed. An issue is then complete at the version its page was
/// read at if that version is older than the feed's quiet minute (twice over, for clocks):
/// every worklog it had then is in the feed, and any later change moves the issue's `updated`,
/// so the next run reads it again. Issues changed more recently stay behind and are read one
/// by one, as are issues with a worklog that could not be read.
async fn sweep(
    ctx: &StreamContext,
    run: &ChildRun<'_>,
    seen: u64,
    missing: u64,
) -> anyhow::Result<()> {
    let behind = ctx
        .store
        .issues_behind(&ctx.site, NAME, Behind::NotCurrent, i64::MIN, SWEEP_ISSUES)
        .await?;
    let per_page = LIST_SIZE as u64;
    let cost = seen.div_ceil(per_page) + 1 + missing.div_ceil(per_page);
    if behind.is_empty() || cost >= behind.len() as u64 {
        return Ok(());
    }
    let cutoff = ctx.client.server_now() - QUIET - QUIET;
    // The whole updated feed: which worklogs exist, and at which version.
    let mut feed: Vec<(i64, Option<i64>)> = Vec::new();
    let mut since = 0;
    loop {
        let (items, until, last) = feed_page(ctx, run, Feed::Updated, since).await?;
        feed.extend(items.iter().map(|i| (i.worklog_id, i.updated_time)));
        if last {
            break;
        }
        since = until;
    }
    // Those not stored at that version are listed and written, a list's worth a transaction.
    let mut unread: HashSet<i64> = HashSet::new();
    let mut wanted = Vec::new();
    for chunk in feed.chunks(LIST_SIZE) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let stored = ctx.store.child_versions(&TABLE, &ctx.site, &ids).await?;
        wanted.extend(chunk.iter().filter_map(|(id, at)| {
            let current = stored
                .get(id)
                .is_some_and(|v| Some(v.timestamp_millis()) == *at);
            (!current).then_some(*id)
        }));
    }
    drop(feed);
    // A page starts at the time the one before it ended: a worklog may be named twice.
    wanted.sort_unstable();
    wanted.dedup();
    for chunk in wanted.chunks(LIST_SIZE) {
        let ours = list_ours(ctx, run, chunk).await?;
        let mut by_issue: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for worklog in ours {
            if let Some(issue) = issue_of(&worklog) {
                by_issue.entry(issue).or_default().push(worklog);
            }
        }
        let mut write = PageWrite::empty(NAME);
        write.resolves = true;
        let mut batch = Batch::new(&TABLE, &ctx.site);
        for (issue, list) in by_issue {
            let (_, all_read) = read_into(NAME, &list, &mut batch, &mut write, |w| {
                parse_worklog(w, Some(issue))
            });
            if !all_read {
                unread.insert(issue);
            }
        }
        write.batches.push(batch);
        let written = ctx.store.write_page(&ctx.site, write).await?;
        run.run.counters.tally(written, &NoProgress, 0);
    }
    // Worklogs deleted: marked.
    let mut since = 0;
    loop {
        let (items, until, last) = feed_page(ctx, run, Feed::Deleted, since).await?;
        let mut write = PageWrite::empty(NAME);
        write
            .deletes
            .push((&TABLE, items.iter().map(|i| i.worklog_id).collect()));
        let written = ctx.store.write_page(&ctx.site, write).await?;
        run.run.counters.tally(written, &NoProgress, 0);
        if last {
            break;
        }
        since = until;
    }
    let mut marks = PageWrite::empty(NAME);
    marks.synced = behind
        .iter()
        .filter(|(id, updated)| *updated < cutoff && !unread.contains(id))
        .map(|&(issue_id, updated)| Synced {
            child: NAME,
            issue_id,
            updated,
            complete: true,
        })
        .collect();
    let completed = marks.synced.len();
    ctx.store.write_page(&ctx.site, marks).await?;
    tracing::info!(
        issues = completed,
        of = behind.len(),
        requests_saved = behind.len() as u64 - cost,
        "read the worklogs Jira truncated in issue pages from the worklog feeds"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worklog_reads_its_seconds_and_its_comment_as_text() {
        let value = json!({
            "id": "10100", "issueId": "10007",
            "author": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
            "updateAuthor": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
            "comment": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Pairing"}]}]},
            "started": "2025-03-04T09:00:00.000+0000",
            "created": "2025-03-04T10:15:27.120+0100",
            "updated": "2025-03-04T10:15:27.120+0100",
            "timeSpent": "1h 30m", "timeSpentSeconds": 5400
        });
        let row = parse_worklog(&value, None).expect("reads");
        assert_eq!((row.id, row.issue_id), (10100, 10007));
        assert_eq!(row.time_spent_seconds, Some(5400));
        assert_eq!(row.comment_text.as_deref(), Some("Pairing"));
        let bad = json!({"id": "1", "issueId": "2", "timeSpentSeconds": "lots"});
        assert!(parse_worklog(&bad, None).is_err());
    }
}
