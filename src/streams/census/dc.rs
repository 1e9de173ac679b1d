//! The census on Data Center, which has neither `/search/jql` nor bulk fetch: ids are listed
//! with `POST /rest/api/2/search` (`fields=id`, `startAt` paging, as many per page as the
//! server's `maxResults` cap allows), and candidates are confirmed with a search for
//! `id in (...)` (up to 100 at a time) sent with `validateQuery: false`, since Data Center
//! refuses a validated query naming an issue that does not exist. Should a server refuse it
//! all the same (400), each candidate of that chunk is asked for with
//! `GET /rest/api/2/issue/{id}`, where 404 means gone.
//!
//! Offset paging over `ORDER BY id` can skip an issue when one before it is deleted mid-listing;
//! a skipped issue then looks vanished, but the confirmation finds it, so it is never marked.

use super::Roster;
use crate::jira::model::LegacySearchPage;
use crate::streams::parse::identify;
use crate::streams::{RunCounters, StreamContext};
use serde_json::json;
use std::collections::BTreeSet;

/// Asked for on every id page; Data Center caps it at its `jira.search.views.default.max`
/// (1000 by default) and says in `maxResults` what it applied.
const ID_PAGE_SIZE: usize = 1000;

/// Data Center: ids listed with `startAt` paging, candidates confirmed by an id search.
pub(super) struct DataCenterRoster;

#[async_trait::async_trait]
impl Roster for DataCenterRoster {
    async fn list(
        &self,
        ctx: &StreamContext,
        project_id: i64,
        _stored: &BTreeSet<i64>,
        counters: &RunCounters,
    ) -> anyhow::Result<BTreeSet<i64>> {
        list_ids(ctx, project_id, counters).await
    }
}

/// Every issue id Data Center lists for the project now.
async fn list_ids(
    ctx: &StreamContext,
    project_id: i64,
    counters: &RunCounters,
) -> anyhow::Result<BTreeSet<i64>> {
    let jql = format!("project = {project_id} ORDER BY id ASC");
    let mut ids = BTreeSet::new();
    let mut start_at = 0usize;
    let mut page_size = ID_PAGE_SIZE;
    loop {
        let body = json!({
            "jql": jql, "startAt": start_at, "maxResults": page_size, "fields": ["id"],
        });
        counters.request();
        let page: LegacySearchPage = ctx.client.post("/rest/api/2/search", &body).await?;
        let before = ids.len();
        for issue in &page.issues {
            let (id, _) = identify(issue);
            ids.insert(id.parse().map_err(|_| {
                anyhow::anyhow!("an id-only search page lists an issue without a numeric id ({id})")
            })?);
        }
        start_at += page.issues.len();
        if page.issues.is_empty() || page.total.is_none_or(|total| start_at >= total) {
            return Ok(ids);
        }
        if ids.len() == before {
            anyhow::bail!(
                "the id listing of project {project_id} at startAt={start_at} brought no issue \
                 not seen before: the server does not page as Jira does; nothing was marked \
                 deleted"
            );
        }
        // Ask for no more than the server grants, so every page is a whole one.
        page_size = page.max_results.filter(|m| *m > 0).unwrap_or(page_size);
    }
}
