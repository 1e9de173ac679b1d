//! Users: `/rest/api/3/users/search`, a bare JSON array per page, paged with `startAt` until an
//! empty page (never on a short one); a full refresh each run. Needs the "Browse users and
//! groups" permission: without it Jira answers 403 and the stream is skipped, with the reason.

use super::parse::{ParseError, Record};
use super::{RunCounters, StreamContext, StreamStatus};
use crate::jira::JiraError;
use crate::store::rows::UserRow;
use crate::sync::progress::Progress;
use serde_json::Value;
use std::collections::HashSet;

/// Well under Jira's 1000 cap: large user pages can exceed Jira's 10-second budget (409).
const PAGE_SIZE: usize = 200;

pub async fn run(
    ctx: &StreamContext,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut start_at = 0usize;
    loop {
        counters.request();
        let query = [
            ("startAt", start_at.to_string()),
            ("maxResults", PAGE_SIZE.to_string()),
        ];
        let page: Vec<Value> = match ctx.client.get("/rest/api/3/users/search", &query).await {
            Ok(page) => page,
            Err(JiraError::Forbidden { .. }) => {
                return Ok(StreamStatus::Skipped(
                    "the account lacks the \"Browse users and groups\" global permission \
                     (Jira answered 403); grant it to sync users"
                        .to_string(),
                ));
            }
            Err(err) => return Err(err.into()),
        };
        if page.is_empty() {
            return Ok(StreamStatus::Done);
        }
        let mut rows = page.iter().map(parse_user).collect::<Result<Vec<_>, _>>()?;
        let fetched = rows.len();
        // A repeated account (the list shifted while paging) is written once per page.
        rows.retain(|r| seen.insert(r.account_id.clone()));
        if rows.is_empty() {
            tracing::warn!(
                start_at,
                "a users page held only accounts already seen; stopping"
            );
            return Ok(StreamStatus::Done);
        }
        let written = ctx.store.write_users(&ctx.site, &rows).await?;
        counters.page(rows.len(), written, progress);
        start_at += fetched;
    }
}

/// Reads one user record into a row. Hidden emails and zones read as absent.
pub fn parse_user(value: &Value) -> Result<UserRow, ParseError> {
    let r = Record::new("user", value, &["accountId"]);
    Ok(UserRow {
        account_id: r.req_str("accountId")?,
        account_type: r.opt_str("accountType")?,
        app_type: r.opt_str("appType")?,
        display_name: r.opt_str("displayName")?,
        email: r.opt_str("emailAddress")?.filter(|e| !e.is_empty()),
        active: r.opt_bool("active")?,
        time_zone: r.opt_str("timeZone")?,
        locale: r.opt_str("locale")?,
        raw: value.clone(),
    })
}
