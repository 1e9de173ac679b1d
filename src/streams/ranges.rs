//! Listing a big set of issues at once rather than a page after another: the set is cut into
//! ranges of `created`, each listed on its own, all at the same time.
//!
//! `created` never changes, so an issue stays in one range however long the listing takes.
//! The cuts are JQL date literals in the API user's zone, and adjacent ranges share theirs
//! (`created < "c"` / `created >= "c"`), so whatever instant Jira reads a literal as (minute
//! precision, a DST fold), every issue falls in exactly one range; the outer ranges are open.
//! Numeric issue-id bounds are not safe on a real site: Jira resolves the value of an issue
//! clause to an issue (one that does not exist is a 400 on Data Center and may be on Cloud),
//! and its range operators on issue keys compare key numbers, which moved issues reorder.

use super::{RunCounters, StreamContext};
use crate::jira::model::SearchPage;
use crate::jira::time::{jql_datetime_literal, parse_jira_timestamp_value};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// Jira's largest search page, documented for requests of `id` or `key` alone: with any other
/// field the cap is undocumented and commonly 100, so listings ask for keys only.
pub const LIST_PAGE_SIZE: usize = 5000;

/// Reads every page of the narrow search `jql` (only `fields`, which should be `key` alone to
/// get [`LIST_PAGE_SIZE`] a page; a server that answers fewer is followed all the same),
/// following `nextPageToken` to the last page, and hands `each` every issue. With `slots`,
/// each request waits for one of them first.
pub async fn list_pages(
    ctx: &StreamContext,
    counters: &RunCounters,
    jql: &str,
    fields: &[&str],
    slots: Option<&tokio::sync::Semaphore>,
    mut each: impl FnMut(&serde_json::value::RawValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "jql": jql, "fields": fields, "maxResults": LIST_PAGE_SIZE });
        if let Some(t) = &token {
            body["nextPageToken"] = json!(t);
        }
        counters.request();
        let page: SearchPage = {
            let _slot = match slots {
                Some(slots) => Some(slots.acquire().await?),
                None => None,
            };
            ctx.client.post("/rest/api/3/search/jql", &body).await?
        };
        for issue in &page.issues {
            each(issue)?;
        }
        if page.is_last.unwrap_or(false) || page.next_page_token.is_none() {
            return Ok(());
        }
        super::issues::no_progress_guard(jql, token.as_deref(), &page)?;
        token = page.next_page_token;
    }
}

/// Every issue id `filter` (JQL without `ORDER BY`) lists now, in order of `created` (which no
/// edit changes), from pages that ask for keys alone. With `slots`, each request waits for one
/// of them first.
pub async fn list_ids(
    ctx: &StreamContext,
    counters: &RunCounters,
    filter: &str,
    slots: Option<&tokio::sync::Semaphore>,
) -> anyhow::Result<Vec<i64>> {
    let jql = format!("{filter} ORDER BY created ASC, key ASC");
    let mut ids = Vec::new();
    list_pages(ctx, counters, &jql, &["key"], slots, |issue| {
        let (id, _) = super::parse::identify(issue);
        ids.push(id.parse().map_err(|_| {
            anyhow::anyhow!("an id-only search page lists an issue without a numeric id ({id})")
        })?);
        Ok(())
    })
    .await?;
    Ok(ids)
}

/// [`list_ids`] of `scope` (about `expected` issues): in ranges of `created` listed all at once
/// ([`created_ranges`]) when it needs more than two listing pages, so a big set takes about one
/// round trip rather than a page after another. The ranges follow one another, so the ids
/// stay in order of `created`; an id listed twice (a page boundary shifting under a listing)
/// is kept once.
pub async fn list_ids_in_created_ranges(
    ctx: &StreamContext,
    counters: &RunCounters,
    zone: Tz,
    scope: &str,
    expected: usize,
    slots: Option<&tokio::sync::Semaphore>,
) -> anyhow::Result<Vec<i64>> {
    let filters = created_ranges(
        ctx,
        counters,
        zone,
        scope,
        expected,
        LIST_PAGE_SIZE,
        ctx.max_in_flight,
    )
    .await?;
    let lists = filters
        .iter()
        .map(|filter| list_ids(ctx, counters, filter, slots));
    let listed = futures::future::try_join_all(lists).await?;
    let mut seen = std::collections::HashSet::new();
    Ok(listed
        .into_iter()
        .flatten()
        .filter(|id| seen.insert(*id))
        .collect())
}

/// A timestamp field of a listed issue (`fields.<name>`, or `<name>` at the top), if it reads.
pub fn listed_field(issue: &serde_json::value::RawValue, name: &str) -> Option<DateTime<Utc>> {
    let value: serde_json::Value = serde_json::from_str(issue.get()).ok()?;
    let field = value
        .get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| value.get(name))?;
    parse_jira_timestamp_value(field)
}

/// JQL filters (without `ORDER BY`) that together select exactly what `scope` selects, each
/// about `per_range` of the `expected` issues if they were created evenly between the oldest
/// and the newest; just `scope` when two pages will do (two pages one after the other take
/// as long as finding the span and listing the ranges, with fewer requests). At most
/// `max_ranges` ranges.
pub async fn created_ranges(
    ctx: &StreamContext,
    counters: &RunCounters,
    zone: Tz,
    scope: &str,
    expected: usize,
    per_range: usize,
    max_ranges: usize,
) -> anyhow::Result<Vec<String>> {
    if expected <= 2 * per_range {
        return Ok(vec![scope.to_owned()]);
    }
    let (oldest, newest) = futures::future::try_join(
        edge_created(
            ctx,
            counters,
            &format!("{scope} ORDER BY created ASC, key ASC"),
        ),
        edge_created(
            ctx,
            counters,
            &format!("{scope} ORDER BY created DESC, key DESC"),
        ),
    )
    .await?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(vec![scope.to_owned()]);
    };
    // A quarter more ranges than pages, so an uneven spread still fits about a page per range.
    let ranges = (expected + expected / 4)
        .div_ceil(per_range.max(1))
        .clamp(2, max_ranges.max(2));
    let cuts = created_cuts(oldest, newest, ranges, zone);
    Ok(range_filters(scope, &cuts))
}

/// `ranges - 1` literals cut evenly between `oldest` and `newest`, in order, each once.
pub fn created_cuts(
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    ranges: usize,
    zone: Tz,
) -> Vec<String> {
    let (oldest, newest) = (oldest.min(newest), oldest.max(newest));
    let span = (newest - oldest).num_milliseconds();
    let ranges = i64::try_from(ranges.max(1)).unwrap_or(i64::MAX);
    let first = jql_datetime_literal(oldest, zone);
    let mut cuts: Vec<String> = (1..ranges)
        .map(|i| oldest + chrono::Duration::milliseconds(span / ranges * i))
        .map(|at| jql_datetime_literal(at, zone))
        .filter(|literal| *literal != first)
        .collect();
    // Minute precision makes near cuts print alike, and in a DST fold a later instant prints
    // as an earlier wall-clock time: keep each literal once, in wall-clock order (the literals
    // sort as text), so each range starts where the one before it ends.
    cuts.sort();
    cuts.dedup();
    cuts
}

/// `scope` cut at `cuts`: below the first, between each pair, from the last on.
pub fn range_filters(scope: &str, cuts: &[String]) -> Vec<String> {
    if cuts.is_empty() {
        return vec![scope.to_owned()];
    }
    let mut filters = vec![format!("{scope} AND created < \"{}\"", cuts[0])];
    for pair in cuts.windows(2) {
        filters.push(format!(
            "{scope} AND created >= \"{}\" AND created < \"{}\"",
            pair[0], pair[1]
        ));
    }
    filters.push(format!(
        "{scope} AND created >= \"{}\"",
        cuts[cuts.len() - 1]
    ));
    filters
}

/// When the first issue `jql` finds was created, if it finds one.
async fn edge_created(
    ctx: &StreamContext,
    counters: &RunCounters,
    jql: &str,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let body = json!({ "jql": jql, "fields": ["created"], "maxResults": 1 });
    counters.request();
    let page: SearchPage = ctx.client.post("/rest/api/3/search/jql", &body).await?;
    let Some(issue) = page.issues.first() else {
        return Ok(None);
    };
    Ok(listed_field(issue, "created"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn cuts_split_the_span_evenly_in_the_users_zone() {
        let cuts = created_cuts(at(8, 0), at(12, 0), 4, chrono_tz::Europe::Berlin);
        assert_eq!(
            cuts,
            vec!["2026/03/02 10:00", "2026/03/02 11:00", "2026/03/02 12:00"]
        );
    }

    #[test]
    fn near_cuts_that_print_alike_are_kept_once_and_never_the_oldest_minute() {
        let cuts = created_cuts(at(8, 0), at(8, 2), 8, chrono_tz::UTC);
        assert_eq!(cuts, vec!["2026/03/02 08:01"]);
        assert!(created_cuts(at(8, 0), at(8, 0), 5, chrono_tz::UTC).is_empty());
    }

    #[test]
    fn in_a_dst_fold_the_cuts_stay_in_wall_clock_order() {
        // Berlin falls back at 01:00 UTC on 2026-10-25: 02:00-03:00 local happens twice.
        let utc = |h: u32, m: u32| {
            Utc.with_ymd_and_hms(2026, 10, 25, h, m, 0)
                .single()
                .expect("valid")
        };
        let cuts = created_cuts(utc(0, 30), utc(1, 40), 4, chrono_tz::Europe::Berlin);
        assert_eq!(
            cuts,
            vec!["2026/10/25 02:05", "2026/10/25 02:22", "2026/10/25 02:47"]
        );
    }

    #[test]
    fn filters_share_their_bounds_and_leave_the_outer_ranges_open() {
        let cuts = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            range_filters("project = 7", &cuts),
            vec![
                "project = 7 AND created < \"a\"",
                "project = 7 AND created >= \"a\" AND created < \"b\"",
                "project = 7 AND created >= \"b\"",
            ]
        );
        assert_eq!(range_filters("project = 7", &[]), vec!["project = 7"]);
    }
}
