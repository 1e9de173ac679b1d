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
use crate::streams::issues::dc::list_ids;
use crate::streams::{RunCounters, StreamContext};
use std::collections::BTreeSet;

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
        let filter = format!("project = {project_id}");
        Ok(list_ids(ctx, counters, &filter)
            .await?
            .into_iter()
            .collect())
    }
}
