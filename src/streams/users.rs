//! Users: `/rest/api/3/users/search`, a bare JSON array per page, paged with `startAt` until an
//! empty page (never on a short one); a full refresh each run. Needs the "Browse users and
//! groups" permission: without it Jira answers 403 and the stream is skipped, with the reason.
//!
//! Data Center has no `/users/search`: it lists users with `/rest/api/2/user/search`, whose
//! `username` is required (`.` matches every user) and which leaves inactive users out unless
//! `includeInactive=true`. Its users have no `accountId`; they are stored under their `key`
//! (stable across username changes) in `account_id`.
//!
//! Jira Data Center 10 yields only the first 100 matches of a user search, however it is paged
//! (JRASERVER-78660). A query whose matches end at exactly 100 is therefore split by username
//! prefix (`a`, `b`, …, `0`, …, then `aa`, `ab`, … under a prefix that is itself capped), and
//! the results are merged by user key. `username` matches a case-insensitive prefix of the
//! username, the e-mail address, or a word of the display name, so the users whose username
//! starts with a prefix are always among its matches; the other matches only overlap, and the
//! merge absorbs them. A user whose username is exactly a capped prefix is not matched by any
//! longer prefix, so it is looked up by name (`/rest/api/2/user?username=`). The children of a
//! prefix are the characters usernames are made of (letters, digits, `.`, `-`, `_`, `@`, `'`,
//! `+`) plus any other character seen after that prefix; a username continuing with a
//! character outside both, under a capped prefix, is the one case this cannot reach. Past
//! `MAX_PREFIX_LEN` characters a still-capped prefix is reported, naming it. On Jira 9 and
//! earlier, and on sites under 100 users, the one `.` listing is complete and nothing is split.

use super::parse::{ParseError, Record, read_records};
use super::{
    Availability, Probe, Progress, Run, RunCounters, Schedule, Stream, StreamContext, StreamStatus,
};
use crate::jira::model::RawRecord;
use crate::jira::{Flavor, JiraError};
use crate::settings::Settings;
use crate::store::status::{Count, Which};
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, CheckpointWrite, PageWrite, Row, SetAside};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

/// Well under Jira's 1000 cap: large user pages can exceed Jira's 10-second budget (409).
const PAGE_SIZE: usize = 200;
/// Jira Data Center 10's window on user search results, whatever `startAt` says.
const DC_SEARCH_WINDOW: usize = 100;
/// The characters a username prefix is extended by when its search is capped.
const USERNAME_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789.-_@'+";
/// The longest username prefix searched: a capped prefix this long is reported, not split.
const MAX_PREFIX_LEN: usize = 12;
/// The Data Center query that matches every user.
const EVERYONE: &str = ".";

const FORBIDDEN: &str = "the account lacks the \"Browse users and groups\" global permission \
                         (Jira answered 403, or on Data Center listed no user at all); grant it \
                         to sync users";

/// The endpoint and query of one page of users; `username` is the Data Center search string.
fn page_request(
    username: Option<&str>,
    start_at: usize,
) -> (&'static str, Vec<(&'static str, String)>) {
    let mut query = vec![
        ("startAt", start_at.to_string()),
        ("maxResults", PAGE_SIZE.to_string()),
    ];
    let Some(username) = username else {
        return ("/rest/api/3/users/search", query);
    };
    query.extend([
        ("username", username.to_owned()),
        ("includeActive", "true".to_owned()),
        ("includeInactive", "true".to_owned()),
    ]);
    ("/rest/api/2/user/search", query)
}

/// What to do when users cannot be read.
const USERS_FIX: &str = "grant the account the global permission Browse users and groups \
                         (USER_PICKER), or set sync.users = false";

/// `jira.users`.
pub static TABLE: Table = Table {
    name: "jira.users",
    owner: Owner::Site,
    key: &["account_id"],
    columns: &[
        col("account_id", Kind::Text),
        col("account_type", Kind::Text),
        col("app_type", Kind::Text),
        col("display_name", Kind::Text),
        col("email", Kind::Text),
        col("active", Kind::Bool),
        col("time_zone", Kind::Text),
        col("locale", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: false,
};

/// A row of `jira.users`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub account_id: String,
    pub account_type: Option<String>,
    pub app_type: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    pub time_zone: Option<String>,
    pub locale: Option<String>,
    pub raw: Value,
}

impl Row for UserRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.account_id.into(),
            self.account_type.into(),
            self.app_type.into(),
            self.display_name.into(),
            self.email.into(),
            self.active.into(),
            self.time_zone.into(),
            self.locale.into(),
            self.raw.into(),
        ]
    }
}

/// The users stream: a full refresh every `sync.users_interval_secs`.
pub struct Users {
    schedule: Schedule,
}

impl Users {
    pub fn new(settings: &Settings) -> Users {
        let sync = &settings.sync;
        Users {
            schedule: Schedule::every(sync.users, sync.users_interval_secs),
        }
    }
}

#[async_trait::async_trait]
impl Stream for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let mut listing = Listing {
            ctx,
            counters: run.counters,
            progress: run.progress,
            seen: HashSet::new(),
            names: HashSet::new(),
            quarantined: !ctx.store.quarantined(&ctx.site, "users").await?.is_empty(),
        };
        let result = match ctx.flavor() {
            Flavor::DataCenter => listing.data_center().await,
            Flavor::Cloud => listing.search(None).await.map(|_| ()),
        };
        match result {
            Ok(()) => Ok(StreamStatus::Done),
            Err(Stop::Forbidden) => Ok(StreamStatus::Skipped(FORBIDDEN.to_string())),
            Err(Stop::Denied(why)) => Ok(StreamStatus::Skipped(why)),
            Err(Stop::Failed(err)) => Err(err),
        }
    }

    fn rows(&self, site: &str) -> Option<Count> {
        Some(Count {
            table: &TABLE,
            owner: site.to_owned(),
            which: Which::Live,
        })
    }

    async fn probe(&self, probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        let flavor = probe.client.flavor();
        let one = ("maxResults", "1".to_owned());
        let (path, query) = match flavor {
            Flavor::DataCenter => (
                "/rest/api/2/user/search",
                vec![("username", EVERYONE.to_owned()), one],
            ),
            Flavor::Cloud => ("/rest/api/3/users/search", vec![one]),
        };
        let answer = match probe.request(path, &query).await {
            Ok(answer) => answer,
            Err(err) => return Some(Err(err)),
        };
        let fix = USERS_FIX.to_owned();
        Some(Ok(match answer {
            // Data Center lists nobody, rather than answering 403, to an account that may not
            // browse users (the site has at least the API user).
            Ok(body)
                if flavor == Flavor::DataCenter && body.as_array().is_some_and(Vec::is_empty) =>
            {
                Availability::Unreadable {
                    reason: format!("GET {path}?username=. listed no user"),
                    fix,
                }
            }
            Ok(_) => Availability::Readable { detail: None },
            Err(refusal) => refusal.unreadable(&fix),
        }))
    }
}

/// Why a listing ended early.
enum Stop {
    /// Jira answered 403: the stream is skipped.
    Forbidden,
    /// The token lacks the endpoint's scope (401 while `/myself` answers): skipped, saying so.
    Denied(String),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(err: E) -> Stop {
        Stop::Failed(err.into())
    }
}

/// What one search matched: how many users, and the characters that follow the searched
/// prefix in their usernames (lowercase).
struct Matches {
    count: usize,
    next_chars: BTreeSet<char>,
}

/// The users read so far in this run, written page by page as they arrive.
struct Listing<'a> {
    ctx: &'a StreamContext,
    counters: &'a RunCounters,
    progress: &'a dyn Progress,
    /// Keys (account ids) already written in this run: each user is written once.
    seen: HashSet<String>,
    /// Lowercase Data Center usernames already read.
    names: HashSet<String>,
    /// The stream has records in quarantine: pages resolve those they hold.
    quarantined: bool,
}

impl Listing<'_> {
    /// Every Data Center user: the `.` search, split by username prefix while a search
    /// returns exactly Jira 10's window.
    async fn data_center(&mut self) -> Result<(), Stop> {
        let everyone = self.search(Some(EVERYONE)).await?;
        if everyone.count == 0 {
            // Data Center answers an empty list, not 403, to an account that may not browse
            // users; the site has at least the API user.
            return Err(Stop::Forbidden);
        }
        if everyone.count != DC_SEARCH_WINDOW {
            return Ok(());
        }
        tracing::info!(
            "the user search stopped at Jira Data Center 10's window of 100 users; listing \
             users by username prefix instead"
        );
        // Depth first, in alphabetical order. `.` is not a first character: `username=.`
        // is the search for everyone.
        let mut pending: Vec<String> = children("", &everyone.next_chars)
            .filter(|p| p != EVERYONE)
            .rev()
            .collect();
        while let Some(prefix) = pending.pop() {
            let matches = self.search(Some(&prefix)).await?;
            if matches.count != DC_SEARCH_WINDOW {
                continue;
            }
            if !self.names.contains(&prefix) {
                self.lookup(&prefix).await?;
            }
            if prefix.chars().count() >= MAX_PREFIX_LEN {
                tracing::warn!(
                    prefix = %prefix,
                    "the user search for the username prefix {prefix:?} still returns Jira Data \
                     Center 10's window of 100 users; users whose username starts with it \
                     beyond the first 100 may be missing from jira.users"
                );
                continue;
            }
            pending.extend(children(&prefix, &matches.next_chars).rev());
        }
        Ok(())
    }

    /// Every page of one search (`None`: Cloud's listing of all users), until an empty page.
    async fn search(&mut self, username: Option<&str>) -> Result<Matches, Stop> {
        let prefix = username.filter(|u| *u != EVERYONE).unwrap_or_default();
        let mut matched: HashSet<String> = HashSet::new();
        let mut next_chars = BTreeSet::new();
        let mut start_at = 0usize;
        loop {
            self.counters.request();
            let (path, query) = page_request(username, start_at);
            let page: Vec<RawRecord> = match self.ctx.client.get(path, &query).await {
                Ok(page) => page,
                Err(err @ JiraError::Scope { .. }) => return Err(Stop::Denied(err.to_string())),
                Err(JiraError::Forbidden { .. }) => return Err(Stop::Forbidden),
                Err(err) => return Err(err.into()),
            };
            if page.is_empty() {
                break;
            }
            let fetched = page.len();
            let read = read_records("users", "user", page, |v| parse_user(&v));
            let before = matched.len();
            matched.extend(read.set_aside.iter().map(|s| s.record_id.clone()));
            let mut rows = read.rows;
            for row in &rows {
                matched.insert(row.account_id.clone());
                let Some(name) = row.raw.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let name = name.to_lowercase();
                if let Some(next) = name.strip_prefix(prefix).and_then(|r| r.chars().next()) {
                    next_chars.insert(next);
                }
                self.names.insert(name);
            }
            if matched.len() == before {
                // The list shifted while paging, or the server ignores `startAt`.
                tracing::warn!(
                    start_at,
                    "a users page held only accounts already seen; stopping"
                );
                break;
            }
            rows.retain(|r| self.seen.insert(r.account_id.clone()));
            let set_aside = read
                .set_aside
                .into_iter()
                .filter(|s| self.seen.insert(s.record_id.clone()))
                .collect();
            self.write(rows, set_aside).await?;
            start_at += fetched;
        }
        Ok(Matches {
            count: matched.len(),
            next_chars,
        })
    }

    /// The user whose username is exactly `name`, if there is one (404: none).
    async fn lookup(&mut self, name: &str) -> Result<(), Stop> {
        self.counters.request();
        let query = [("username", name.to_owned())];
        let user: RawRecord = match self.ctx.client.get("/rest/api/2/user", &query).await {
            Ok(user) => user,
            Err(JiraError::NotFound { .. }) => return Ok(()),
            Err(err @ JiraError::Scope { .. }) => return Err(Stop::Denied(err.to_string())),
            Err(JiraError::Forbidden { .. }) => return Err(Stop::Forbidden),
            Err(err) => return Err(err.into()),
        };
        self.names.insert(name.to_owned());
        let read = read_records("users", "user", vec![user], |v| parse_user(&v));
        let rows: Vec<UserRow> = read
            .rows
            .into_iter()
            .filter(|r| self.seen.insert(r.account_id.clone()))
            .collect();
        let set_aside = read
            .set_aside
            .into_iter()
            .filter(|s| self.seen.insert(s.record_id.clone()))
            .collect();
        self.write(rows, set_aside).await?;
        Ok(())
    }

    /// Writes a page of users, and files the records that cannot be read.
    async fn write(&self, rows: Vec<UserRow>, set_aside: Vec<SetAside>) -> anyhow::Result<()> {
        if rows.is_empty() && set_aside.is_empty() {
            return Ok(());
        }
        let seen = rows.len() + set_aside.len();
        let mut page = PageWrite::new(
            "users",
            Batch::of(&self.ctx.site, rows),
            CheckpointWrite::None,
        );
        page.set_aside = set_aside;
        page.resolves = self.quarantined;
        let written = self.ctx.store.write_page(&self.ctx.site, page).await?;
        self.counters.page(seen, written, self.progress);
        Ok(())
    }
}

/// The prefixes one character longer than `prefix`: every usual username character, then any
/// other character seen after `prefix`, in order and without repeats.
fn children<'a>(
    prefix: &'a str,
    seen: &'a BTreeSet<char>,
) -> impl DoubleEndedIterator<Item = String> + 'a {
    let usual = USERNAME_CHARS.chars();
    let unusual = seen
        .iter()
        .copied()
        .filter(|c| !USERNAME_CHARS.contains(*c));
    usual.chain(unusual).map(move |c| format!("{prefix}{c}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_splits_into_every_username_character_then_the_unusual_ones_seen() {
        let seen: BTreeSet<char> = ['b', 'é', '.'].into_iter().collect();
        let all: Vec<String> = children("jo", &seen).collect();
        assert_eq!(all.len(), USERNAME_CHARS.len() + 1);
        assert_eq!(all[0], "joa");
        assert!(all.contains(&"jo9".to_owned()));
        assert!(all.contains(&"jo_".to_owned()));
        assert_eq!(all.last().map(String::as_str), Some("joé"));
    }

    #[test]
    fn data_center_pages_search_by_username_and_include_inactive_users() {
        let (path, query) = page_request(Some("ab"), 200);
        assert_eq!(path, "/rest/api/2/user/search");
        assert!(query.contains(&("username", "ab".to_owned())));
        assert!(query.contains(&("includeInactive", "true".to_owned())));
        assert!(query.contains(&("startAt", "200".to_owned())));
        let (path, query) = page_request(None, 0);
        assert_eq!(path, "/rest/api/3/users/search");
        assert!(!query.iter().any(|(k, _)| *k == "username"));
    }
}
