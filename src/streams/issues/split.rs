//! Splitting a big project's scan into ranges of `created` read in parallel, so one huge project
//! keeps `max_in_flight` requests busy like many small ones do.
//!
//! After a project's first page says there is more, an approximate count tells whether the rest
//! is worth splitting (at least [`SPLIT_MIN_PAGES`] pages); a full scan of a project whose
//! listing reported that many issues (`insight.totalIssueCount`) skips both and splits at
//! once. If so, a listing of the rest that asks for keys alone (pages of 5000, the only size
//! Atlassian documents; a rest bigger than a page in ranges of `created` listed at once) gives
//! the rest's issues in order of `created`, and one bulk fetch of the issues at the cuts (their
//! `created` only) gives the bounds: ranges of a whole number of pages,
//! `project = P [AND updated >= "m"] AND created >= "a" AND created < "b" ORDER BY updated ASC,
//! key ASC`. `created` never changes, so an issue sits in one range however often it is edited
//! during the scan. Adjacent ranges share the same JQL literal as bound, so whatever instant
//! Jira reads it as (minute precision, the user's zone, a DST fold), every issue falls in
//! exactly one range; the outer ranges are open.
//!
//! Each range keeps its own cursor in the checkpoint (`projects.<id>.split.ranges.<i>`),
//! written with every page it covers, so a crash resumes every range where it stood (from its
//! mark on `updated`, less the overlap). The project's own `mark` moves only when every range
//! is complete: to `min(max updated committed, scan start - lag)` with the scan start of the run
//! that planned the ranges, whichever run finishes them. Every issue updated before that
//! instant was last changed before the scan started, so it was in its range when the range was
//! read to its end.
//!
//! Split scans planned by earlier versions cut `updated` instead ([`RangeField::Updated`]);
//! they resume as they were planned.

use super::{LAG, PAGE_SIZE, ProjectCursor, ProjectRow, Scan, set_project, set_range};
use crate::jira::model::ApproximateCount;
use crate::jira::time::{jql_datetime_literal, jql_lower_bound_literal};
use crate::streams::parse::identify;
use crate::streams::ranges::{list_ids_in_created_ranges, listed_field};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, HashSet};

/// How every scan of a project or range is ordered.
const ORDER: &str = " ORDER BY updated ASC, key ASC";
/// A range is never planned shorter than this many pages: each range ends in a partial page
/// and pays a little scheduling, so tiny ranges cost more than they bring.
const MIN_RANGE_PAGES: usize = 5;
/// A rest shorter than this many pages is read page after page: splitting it costs a listing
/// and a bulk fetch, and partial pages at the ranges' ends, while projects read side by side
/// keep the requests busy as well.
const SPLIT_MIN_PAGES: usize = 4 * MIN_RANGE_PAGES;
/// Ranges are planned this many issues short of whole pages: a range resumed after a crash
/// re-reads the issues of its overlap, which would otherwise spill into one more page.
const RESUME_SLACK: usize = 10;

/// A project scan split into ranges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitScan {
    /// When the run that planned the ranges started: no mark passes `scan_start - LAG`,
    /// whichever run resumes the ranges.
    pub scan_start: DateTime<Utc>,
    /// The field the ranges cut.
    #[serde(default)]
    pub on: RangeField,
    /// `updated >= since` (a JQL literal in the user's zone) bounds every range of a split
    /// of `created`: the rest of an incremental scan. `None`: the whole project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// In order of the field; together they cover every issue the scan reads.
    pub ranges: Vec<RangeCursor>,
}

/// The field a split scan's ranges cut.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RangeField {
    /// Ranges of `updated`: split scans planned by earlier versions, from a listing of
    /// `updated`.
    #[default]
    Updated,
    /// Ranges of `created`.
    Created,
}

impl RangeField {
    fn jql(self) -> &'static str {
        match self {
            RangeField::Updated => "updated",
            RangeField::Created => "created",
        }
    }
}

/// One range and how far it has been read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RangeCursor {
    /// JQL date literal in the user's zone: `<field> >= from`; `None`: no lower bound.
    pub from: Option<String>,
    /// `<field> < to`; `None`: no upper bound.
    pub to: Option<String>,
    /// Every issue of the range updated before this instant has been committed.
    #[serde(default)]
    pub mark: Option<DateTime<Utc>>,
    #[serde(default)]
    pub complete: bool,
}

/// Where to cut a rest of `listed` issues (in order of `created`) into ranges of at most
/// `range_pages` pages (less [`RESUME_SLACK`]): the positions of the first issue of every range
/// after the first. Empty when the rest fits in fewer than two ranges.
pub fn cut_positions(listed: usize, range_pages: usize) -> Vec<usize> {
    let size = range_pages.max(1) * PAGE_SIZE as usize - RESUME_SLACK;
    (1..)
        .map(|i| i * size)
        .take_while(|&at| at < listed)
        .collect()
}

/// Ranges of `created` bounded at `bounds` (the `created` of the issues at the cuts, in the
/// order of the listing): each bound once, floored to the minute and written in `zone`, so
/// the issues of a bound's minute all go to the range that starts there. `None` when no two
/// bounds differ, as when one minute holds the whole rest.
pub fn plan(bounds: &[DateTime<Utc>], zone: Tz) -> Option<Vec<RangeCursor>> {
    let mut literals: Vec<String> = bounds
        .iter()
        .map(|at| jql_datetime_literal(*at, zone))
        .collect();
    // A DST fold prints a later instant as an earlier wall-clock time: keep wall-clock order
    // (the literals sort as text) so each range starts where the one before it ends.
    literals.sort();
    literals.dedup();
    if literals.is_empty() {
        return None;
    }
    let lowers = std::iter::once(None).chain(literals.iter().cloned().map(Some));
    let uppers = literals
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
pub fn range_jql(
    scan: &Scan<'_>,
    project_id: i64,
    split: &SplitScan,
    range: &RangeCursor,
) -> String {
    let mut jql = format!("project = {project_id}");
    if let Some(since) = &split.since {
        jql.push_str(&format!(" AND updated >= \"{since}\""));
    }
    let field = split.on.jql();
    if let Some(from) = &range.from {
        jql.push_str(&format!(" AND {field} >= \"{from}\""));
    }
    if let Some(to) = &range.to {
        jql.push_str(&format!(" AND {field} < \"{to}\""));
    }
    if let Some(mark) = range.mark {
        let resume = jql_lower_bound_literal(mark - scan.overlap(), scan.zone);
        jql.push_str(&format!(" AND updated >= \"{resume}\""));
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
    let order = list_ids_in_created_ranges(
        ctx,
        scan.counters,
        scan.zone,
        &scope,
        rest,
        Some(&scan.slots),
    )
    .await?;
    let pages = range_pages(order.len(), scan.max_ranges());
    let cuts: Vec<i64> = cut_positions(order.len(), pages)
        .into_iter()
        .map(|at| order[at])
        .collect();
    let created = created_of(scan, &cuts).await?;
    // An issue deleted since the listing leaves no bound: its neighbours' ranges merge.
    let bounds: Vec<DateTime<Utc>> = cuts
        .iter()
        .filter_map(|id| created.get(id))
        .copied()
        .collect();
    let Some(ranges) = plan(&bounds, scan.zone) else {
        return Ok(None);
    };
    tracing::debug!(
        issues = order.len(),
        ranges = ranges.len(),
        "project split into created ranges"
    );
    let split = SplitScan {
        scan_start: scan.started,
        on: RangeField::Created,
        since: from,
        ranges,
    };
    let listed: HashSet<i64> = order.into_iter().collect();
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
    let jql = range_jql(scan, project.id, split, range);
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

/// When each of `ids` was created, from bulk fetches that ask for `created` alone (100 ids a
/// request). An issue Jira no longer shows is left out.
async fn created_of(scan: &Scan<'_>, ids: &[i64]) -> anyhow::Result<HashMap<i64, DateTime<Utc>>> {
    let (found, _) = {
        let _slot = scan.slot().await?;
        super::fetch::bulk_fetch(scan.ctx, ids, scan.counters, &["created"]).await?
    };
    Ok(found
        .iter()
        .filter_map(|issue| {
            let id = identify(issue).0.parse::<i64>().ok()?;
            Some((id, listed_field(issue, "created")?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
            .single()
            .expect("valid")
            + chrono::Duration::minutes(minute)
    }

    #[test]
    fn cuts_fall_every_whole_number_of_pages_less_the_slack() {
        assert_eq!(cut_positions(1_000, 3), vec![290, 580, 870]);
        assert_eq!(cut_positions(580, 3), vec![290]);
        assert_eq!(cut_positions(290, 3), Vec::<usize>::new());
        assert_eq!(cut_positions(0, 3), Vec::<usize>::new());
    }

    #[test]
    fn ranges_share_their_bounds_and_leave_the_outer_ones_open() {
        let ranges = plan(&[at(10), at(20), at(30)], chrono_tz::UTC).expect("split");
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].from, None);
        assert_eq!(ranges[0].to.as_deref(), Some("2026/01/05 09:10"));
        for pair in ranges.windows(2) {
            assert_eq!(
                pair[1].from, pair[0].to,
                "adjacent ranges share their bound"
            );
        }
        assert_eq!(ranges[3].to, None);
        assert!(ranges.iter().all(|r| r.mark.is_none() && !r.complete));
    }

    #[test]
    fn bounds_in_one_minute_make_one_cut_and_one_minute_for_all_makes_none() {
        let crowded = [at(5), at(5) + chrono::Duration::seconds(30), at(9)];
        let ranges = plan(&crowded, chrono_tz::UTC).expect("split");
        assert_eq!(ranges.len(), 3);
        assert_eq!(plan(&[], chrono_tz::UTC), None);
    }

    #[test]
    fn in_a_dst_fold_the_bounds_stay_in_wall_clock_order() {
        // Berlin falls back at 01:00 UTC on 2026-10-25: 02:00-03:00 local happens twice.
        let utc = |h: u32, m: u32| {
            Utc.with_ymd_and_hms(2026, 10, 25, h, m, 0)
                .single()
                .expect("valid")
        };
        let ranges = plan(&[utc(0, 40), utc(1, 10)], chrono_tz::Europe::Berlin).expect("split");
        let bounds: Vec<_> = ranges.iter().filter_map(|r| r.to.clone()).collect();
        assert_eq!(bounds, vec!["2026/10/25 02:10", "2026/10/25 02:40"]);
    }

    #[test]
    fn split_scans_of_earlier_versions_read_as_ranges_of_updated() {
        let old = json!({"scan_start": "2026-01-05T09:00:00Z",
                         "ranges": [{"from": null, "to": "2026/01/05 10:00"}]});
        let split: SplitScan = serde_json::from_value(old).expect("reads");
        assert_eq!(split.on, RangeField::Updated);
        assert_eq!(split.since, None);
        let new = serde_json::to_value(SplitScan {
            on: RangeField::Created,
            ..split
        })
        .expect("writes");
        assert_eq!(new["on"], "created");
    }

    #[test]
    fn range_size_grows_so_the_number_of_ranges_stays_bounded() {
        assert_eq!(range_pages(20_000, 32), 7);
        assert_eq!(range_pages(20_000, 8), 25);
        assert_eq!(range_pages(8_000, 32), MIN_RANGE_PAGES);
        assert_eq!(range_pages(150, 32), MIN_RANGE_PAGES);
    }
}
