//! Users: `/rest/api/3/users/search`, a bare JSON array per page, paged with `startAt` until an
//! empty page (never on a short one); a full refresh each run. Needs the "Browse users and
//! groups" permission: without it Jira answers 403 and the stream is skipped, with the reason.
//!
//! Data Center has no `/users/search`: it lists users with `/rest/api/2/user/search`, whose
//! `username` is required (`.` matches every user) and which leaves inactive users out unless
//! `includeInactive=true`. Its users have no `accountId`; they are stored under their `key`
//! (stable across username changes) in `account_id`. Jira Data Center 10 returns only the
//! first 100 matches of a user search, however paged (JRASERVER-78660), so a listing that ends
//! at exactly 100 users is reported as possibly incomplete.

use super::parse::{ParseError, Record};
use super::{RunCounters, StreamContext, StreamStatus};
use crate::jira::JiraError;
use crate::store::rows::UserRow;
use crate::sync::progress::Progress;
use serde_json::Value;
use std::collections::HashSet;

/// Well under Jira's 1000 cap: large user pages can exceed Jira's 10-second budget (409).
const PAGE_SIZE: usize = 200;
/// Jira Data Center 10's window on user search results, whatever `startAt` says.
const DC_SEARCH_WINDOW: usize = 100;

/// The endpoint and query of one page of users.
fn page_request(data_center: bool, start_at: usize) -> (&'static str, Vec<(&'static str, String)>) {
    let mut query = vec![
        ("startAt", start_at.to_string()),
        ("maxResults", PAGE_SIZE.to_string()),
    ];
    if !data_center {
        return ("/rest/api/3/users/search", query);
    }
    query.extend([
        ("username", ".".to_owned()),
        ("includeActive", "true".to_owned()),
        ("includeInactive", "true".to_owned()),
    ]);
    ("/rest/api/2/user/search", query)
}

pub async fn run(
    ctx: &StreamContext,
    counters: &RunCounters,
    progress: &Progress,
) -> anyhow::Result<StreamStatus> {
    let data_center = ctx.client.is_data_center();
    let mut seen: HashSet<String> = HashSet::new();
    let mut start_at = 0usize;
    loop {
        counters.request();
        let (path, query) = page_request(data_center, start_at);
        let page: Vec<Value> = match ctx.client.get(path, &query).await {
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
            if data_center && seen.len() == DC_SEARCH_WINDOW {
                tracing::warn!(
                    users = seen.len(),
                    "the user listing ended at exactly 100 users: Jira Data Center 10 returns \
                     no more than the first 100 matches of a user search, so users beyond them \
                     may be missing from jira.users"
                );
            }
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

/// Reads one user record into a row. Hidden emails and zones read as absent. A Data Center
/// user (no `accountId`) is keyed by its `key`.
pub fn parse_user(value: &Value) -> Result<UserRow, ParseError> {
    let r = Record::new("user", value, &["accountId", "key", "name"]);
    let account_id = match (value.get("accountId"), value.get("key")) {
        (None, Some(_)) => r.req_str("key")?,
        _ => r.req_str("accountId")?,
    };
    Ok(UserRow {
        account_id,
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
