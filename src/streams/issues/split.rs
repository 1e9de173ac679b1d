//! Splitting a big project's scan into `updated` ranges read in parallel, so one huge project
//! keeps `max_in_flight` requests busy like many small ones do.
//!
//! After a project's first page says there is more, an approximate count tells whether the rest
//! is worth splitting (at least [`SPLIT_MIN_PAGES`] pages); a full scan of a project whose
//! listing reported that many issues (`insight.totalIssueCount`) skips both and splits at
//! once. If so, an id-only listing of the rest (pages of up to 5000, `fields: ["updated"]`;
//! a rest bigger than a page in ranges of `created` listed at once) gives the exact
//! distribution of `updated`, and the rest is cut into ranges of a whole number of pages:
//! `project = P AND updated >= "a" AND updated < "b" ORDER BY updated ASC, key ASC`. Adjacent
//! ranges share the same JQL literal as bound, so whatever instant Jira reads it as (minute
//! precision, the user's zone, a DST fold), every issue falls in exactly one range; the last
//! range has no upper bound and also catches issues updated during the scan.
//!
//! Each range keeps its own cursor in the checkpoint (`projects.<id>.split.ranges.<i>`),
//! written with every page it covers, so a crash resumes every range where it stood. The
//! project's own `mark` moves only when every range is complete: to
//! `min(max updated committed, scan start - lag)` with the scan start of the run that planned
//! the ranges, whichever run finishes them. Every issue updated before that instant was last
//! changed before the scan started, so it sat in one range for the whole scan and was read.

use super::{LAG, PAGE_SIZE, ProjectCursor, ProjectRow, Scan, set_project, set_range};
use crate::jira::model::ApproximateCount;
use crate::jira::time::{jql_datetime_literal, jql_lower_bound_literal};
use crate::streams::parse::identify;
use crate::streams::ranges::{LIST_PAGE_SIZE, list_pages, listed_field};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;

/// How every scan of a project or range is ordered.
const ORDER: &str = " ORDER BY updated ASC, key ASC";
/// A range is never planned shorter than this many pages: each range ends in a partial page
/// and pays a little scheduling, so tiny ranges cost more than they bring.
const MIN_RANGE_PAGES: usize = 5;
/// A rest shorter than this many pages is read page after page: splitting it would save
/// little time and cost its listing.
const SPLIT_MIN_PAGES: usize = 2 * MIN_RANGE_PAGES;
/// Ranges are planned this many issues short of whole pages: a range resumed after a crash
/// re-reads the issues of its overlap, which would otherwise spill into one more page.
const RESUME_SLACK: usize = 10;

/// A project scan split into ranges of `updated`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitScan {
    /// When the run that planned the ranges started: no mark passes `scan_start - LAG`,
    /// whichever run resumes the ranges.
    pub scan_start: DateTime<Utc>,
    /// In order of `updated`; together they cover every issue from the first range's lower
    /// bound onwards.
    pub ranges: Vec<RangeCursor>,
}

/// One range and how far it has been read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RangeCursor {
    /// JQL date literal in the user's zone: `updated >= from`; `None`: no lower bound.
    pub from: Option<String>,
    /// `updated < to`; `None`: no upper bound.
    pub to: Option<String>,
    /// Every issue of the range updated before this instant has been committed.
    #[serde(default)]
    pub mark: Option<DateTime<Utc>>,
    #[serde(default)]
    pub complete: bool,
}

/// Cuts `updated` (ascending: the rest of a project from `from` on) into ranges of at most
/// `range_pages` pages (less [`RESUME_SLACK`]), each bound at a minute no issue of the range
/// before it shares.
/// `None` when the rest fits in fewer than two ranges.
pub fn plan(
    from: Option<&str>,
    updated: &[DateTime<Utc>],
    range_pages: usize,
    zone: Tz,
) -> Option<Vec<RangeCursor>> {
    let size = range_pages.max(1) * PAGE_SIZE as usize - RESUME_SLACK;
    let literal = |i: usize| jql_datetime_literal(updated[i], zone);
    let mut bounds: Vec<String> = Vec::new();
    let mut start = 0;
    while start + size < updated.len() {
        let mut end = start + size;
        let bound = literal(end);
        // Issues of the bound's minute all go to the next range (the literal is floored).
        while end > start && literal(end - 1) == bound {
            end -= 1;
        }
        if end == start {
            // One minute holds a whole range: bound at the next minute instead.
            end = start + size;
            while end < updated.len() && literal(end) == bound {
                end += 1;
            }
            if end == updated.len() {
                break;
            }
        }
        let bound = literal(end);
        let after_previous = bounds.last().map_or(from, |b| Some(b.as_str()));
        if after_previous.is_none_or(|prev| bound.as_str() > prev) {
            bounds.push(bound);
        }
        start = end;
    }
    if bounds.is_empty() {
        return None;
    }
    let lowers = std::iter::once(from.map(str::to_owned)).chain(bounds.iter().cloned().map(Some));
    let uppers = bounds
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::once(None));
    Some(
        lowers
            .zip(uppers)
            .map(|(from, to)| RangeCursor {
                from,
                to,
                mark: None,
                complete: false,
            })
            .collect(),
    )
}

/// Whether a rest of `issues` is big enough to pay for its listing.
pub fn worth_splitting(issues: usize) -> bool {
    issues >= SPLIT_MIN_PAGES * PAGE_SIZE as usize
}

/// How many pages a range should hold so the project splits into at most `max_ranges`.
pub fn range_pages(issues: usize, max_ranges: usize) -> usize {
    let pages = issues.div_ceil(PAGE_SIZE as usize);
    pages.div_ceil(max_ranges.max(1)).max(MIN_RANGE_PAGES)
}

/// The JQL of a range, resumed from its mark (minus the overlap) when it has one.
pub fn range_jql(scan: &Scan<'_>, project_id: i64, range: &RangeCursor) -> String {
    let mut jql = format!("project = {project_id}");
    if let Some(from) = &range.from {
        jql.push_str(&format!(" AND updated >= \"{from}\""));
    }
    if let Some(mark) = range.mark {
        let resume = jql_lower_bound_literal(mark - scan.overlap(), scan.zone);
        jql.push_str(&format!(" AND updated >= \"{resume}\""));
    }
    if let Some(to) = &range.to {
        jql.push_str(&format!(" AND updated < \"{to}\""));
    }
    jql.push_str(ORDER);
    jql
}

/// Counts the rest of a project after its first page and, when it is big enough, lists it,
/// plans and saves a split scan. `None`: keep reading it page after page.
///
/// `known`: the size of the rest when the caller knows it already (a full scan of a project
/// whose listing carried its issue count), which saves the count.
pub async fn try_split(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    known: Option<usize>,
) -> anyhow::Result<Option<(SplitScan, HashSet<i64>)>> {
    let ctx = scan.ctx;
    let from = cursor
        .mark
        .map(|mark| jql_lower_bound_literal(mark - scan.overlap(), scan.zone));
    let mut scope = format!("project = {}", project.id);
    if let Some(from) = &from {
        scope.push_str(&format!(" AND updated >= \"{from}\""));
    }
    let jql = format!("{scope}{ORDER}");
    let rest = match known {
        Some(rest) => rest,
        None => {
            scan.counters.request();
            let count: ApproximateCount = ctx
                .client
                .post(
                    "/rest/api/3/search/approximate-count",
                    &json!({ "jql": jql }),
                )
                .await?;
            // An estimate, good enough to decide whether the listing pays off.
            usize::try_from(count.count).unwrap_or(0)
        }
    };
    if !worth_splitting(rest) {
        return Ok(None);
    }
    let (updated, listed) = list_updated_in_parallel(scan, &scope, rest).await?;
    let pages = range_pages(updated.len(), scan.max_ranges());
    let Some(ranges) = plan(from.as_deref(), &updated, pages, scan.zone) else {
        return Ok(None);
    };
    tracing::debug!(
        issues = updated.len(),
        ranges = ranges.len(),
        "project split into updated ranges"
    );
    let split = SplitScan {
        scan_start: scan.started,
        ranges,
    };
    let planned = ProjectCursor {
        split: Some(split.clone()),
        ..cursor.clone()
    };
    ctx.store
        .save_checkpoint(&ctx.site, set_project(project.id, planned))
        .await?;
    Ok(Some((split, listed)))
}

/// Reads every range still incomplete, in parallel (the scan's page slots bound them), and
/// returns the project's cursor once all are complete, with the issues read in this run.
pub async fn run_ranges(
    scan: &Scan<'_>,
    project: &ProjectRow,
    cursor: &ProjectCursor,
    split: &SplitScan,
) -> anyhow::Result<(ProjectCursor, HashSet<i64>)> {
    let ranges = split
        .ranges
        .iter()
        .enumerate()
        .map(|(index, range)| read_range(scan, project, split, index, range));
    let read = futures::future::try_join_all(ranges).await?;
    let mut seen = HashSet::new();
    let mut done = Vec::with_capacity(read.len());
    for (range, ids) in read {
        done.push(range);
        seen.extend(ids);
    }
    let ceiling = split.scan_start - LAG;
    let mark = done
        .iter()
        .map(|r| r.mark)
        .chain(std::iter::once(cursor.mark))
        .max()
        .flatten()
        .map(|m| m.min(ceiling));
    let cursor = ProjectCursor {
        key: project.key.clone(),
        mark,
        complete: true,
        split: None,
    };
    Ok((cursor, seen))
}

#[tracing::instrument(skip_all, fields(range = index))]
async fn read_range(
    scan: &Scan<'_>,
    project: &ProjectRow,
    split: &SplitScan,
    index: usize,
    range: &RangeCursor,
) -> anyhow::Result<(RangeCursor, HashSet<i64>)> {
    let mut seen = HashSet::new();
    if range.complete {
        return Ok((range.clone(), seen));
    }
    let jql = range_jql(scan, project.id, range);
    let ceiling = split.scan_start - LAG;
    let mut current = range.clone();
    let mut token: Option<String> = None;
    loop {
        let page = scan
            .page(&jql, token.as_deref(), &mut seen, |page_max, last| {
                current.mark = current.mark.max(page_max.map(|m| m.min(ceiling)));
                current.complete = last;
                Ok(set_range(project.id, index, current.clone()))
            })
            .await?;
        match page {
            None => return Ok((current, seen)),
            next => token = next,
        }
    }
}

/// Every `updated` of the issues `scope` (a JQL filter without `ORDER BY`) finds, ascending,
/// and their ids.
///
/// A rest of about `expected` issues that needs more than one listing page is listed in ranges
/// of `created`, all at once ([`crate::streams::ranges`]), rather than one 5000-issue page after
/// another; an uneven range only pages longer.
async fn list_updated_in_parallel(
    scan: &Scan<'_>,
    scope: &str,
    expected: usize,
) -> anyhow::Result<(Vec<DateTime<Utc>>, HashSet<i64>)> {
    let filters = crate::streams::ranges::created_ranges(
        scan.ctx,
        scan.counters,
        scan.zone,
        scope,
        expected,
        LIST_PAGE_SIZE,
        scan.ctx.max_in_flight,
    )
    .await?;
    let lists = filters
        .iter()
        .map(|filter| format!("{filter}{ORDER}"))
        .collect::<Vec<_>>();
    let listed =
        futures::future::try_join_all(lists.iter().map(|jql| list_updated(scan, jql))).await?;
    let mut updated = Vec::new();
    let mut ids = HashSet::new();
    for (times, listed_ids) in listed {
        updated.extend(times);
        ids.extend(listed_ids);
    }
    updated.sort_unstable();
    Ok((updated, ids))
}

/// Every `updated` of the issues `jql` finds, ascending, and their ids, from id-only pages.
async fn list_updated(
    scan: &Scan<'_>,
    jql: &str,
) -> anyhow::Result<(Vec<DateTime<Utc>>, HashSet<i64>)> {
    let mut updated = Vec::new();
    let mut ids = HashSet::new();
    let read = |issue: &serde_json::value::RawValue| {
        let (id, _) = identify(issue);
        let instant = listed_field(issue, "updated").ok_or_else(|| {
            anyhow::anyhow!("cannot read fields.updated of issue {id} in an id-only search page")
        })?;
        updated.push(instant);
        ids.insert(id.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("an id-only search page lists an issue without a numeric id ({id})")
        })?);
        Ok(())
    };
    let slots = Some(&scan.slots);
    list_pages(scan.ctx, scan.counters, jql, &["updated"], slots, read).await?;
    // Jira sorts by `updated`; sorting again costs little and makes planning safe.
    updated.sort_unstable();
    Ok((updated, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn minutes(spec: &[(i64, usize)]) -> Vec<DateTime<Utc>> {
        let base = Utc
            .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
            .single()
            .expect("valid");
        let mut out = Vec::new();
        for &(minute, count) in spec {
            for i in 0..count {
                out.push(
                    base + chrono::Duration::minutes(minute)
                        + chrono::Duration::seconds(i as i64 % 60),
                );
            }
        }
        out
    }

    fn sizes(ranges: &[RangeCursor], updated: &[DateTime<Utc>]) -> Vec<usize> {
        ranges
            .iter()
            .map(|r| {
                updated
                    .iter()
                    .filter(|u| {
                        let l = jql_datetime_literal(**u, chrono_tz::UTC);
                        r.from.as_ref().is_none_or(|f| &l >= f)
                            && r.to.as_ref().is_none_or(|t| &l < t)
                    })
                    .count()
            })
            .collect()
    }

    #[test]
    fn ranges_hold_whole_pages_and_cover_everything_once() {
        // 1,000 issues, one per minute.
        let updated = minutes(&(0..1000).map(|m| (m, 1)).collect::<Vec<_>>());
        let ranges = plan(Some("2026/01/05 09:00"), &updated, 3, chrono_tz::UTC).expect("split");
        assert_eq!(sizes(&ranges, &updated), vec![290, 290, 290, 130]);
        assert_eq!(ranges[0].from.as_deref(), Some("2026/01/05 09:00"));
        assert_eq!(
            ranges[1].from, ranges[0].to,
            "adjacent ranges share their bound"
        );
        assert_eq!(ranges.last().and_then(|r| r.to.clone()), None);
        assert!(ranges.iter().all(|r| r.mark.is_none() && !r.complete));
    }

    #[test]
    fn a_minute_is_never_cut_in_two() {
        // 250 issues at minute 0, 250 at minute 1..250: a range of 2 pages cannot end inside
        // the crowded minute, so the first range holds all of it.
        let mut spec = vec![(0, 250)];
        spec.extend((1..=250).map(|m| (m, 1)));
        let updated = minutes(&spec);
        let ranges = plan(None, &updated, 2, chrono_tz::UTC).expect("split");
        let counted = sizes(&ranges, &updated);
        assert_eq!(counted.iter().sum::<usize>(), 500);
        assert_eq!(counted[0], 250);
        assert!(counted[1..].iter().all(|n| *n <= 190), "{counted:?}");
        assert_eq!(ranges[0].from, None);
    }

    #[test]
    fn a_rest_of_one_range_is_not_split() {
        let updated = minutes(&(0..490).map(|m| (m, 1)).collect::<Vec<_>>());
        assert_eq!(plan(None, &updated, 5, chrono_tz::UTC), None);
        assert_eq!(plan(None, &[], 4, chrono_tz::UTC), None);
        // A single minute holding everything cannot be split either.
        assert_eq!(plan(None, &minutes(&[(0, 900)]), 2, chrono_tz::UTC), None);
    }

    #[test]
    fn range_size_grows_so_the_number_of_ranges_stays_bounded() {
        assert_eq!(range_pages(20_000, 32), 7);
        assert_eq!(range_pages(20_000, 8), 25);
        assert_eq!(range_pages(8_000, 32), MIN_RANGE_PAGES);
        assert_eq!(range_pages(150, 32), MIN_RANGE_PAGES);
    }
}
