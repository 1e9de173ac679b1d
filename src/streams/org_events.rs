//! Organization audit events: the Atlassian Admin API's polling feed
//! (`/admin/v1/orgs/{orgId}/events-stream`), read with a client of its own (Bearer organization
//! API key, far lower pacing than the site's) into `jira.org_events`, keyed by organization.
//!
//! Checkpoint (stream `org_events`): `{"version":1,"org_id":..,"cursor":..,"high_water":..}`.
//! The feed is sorted by processing time and its cursor keeps its position, so the cursor of
//! the last page read is saved with that page and reused by the next run to poll for events
//! that arrived since: events appended while paging land behind the cursor and are read by this
//! run or the next, never skipped. Rows are upserted by id, so a page read twice (a crash before
//! its commit, a final page re-polled) writes nothing new. Should the API end a run without a
//! cursor, the next one asks again from the last processing time minus [`OVERLAP`].

use super::checkpoint::{self, Checkpoint};
use super::parse::{ParseError, Record, read_records};
use super::{
    Availability, Cursor, Mode, Probe, Run, Schedule, Stream, StreamContext, StreamStatus,
    retry_quarantined,
};
use crate::jira::model::RawRecord;
use crate::jira::{JiraClient, JiraError};
use crate::settings::{AuthMode, ConfigError, JiraSettings, RateLimitSettings, Settings};
use crate::store::status::{Count, Which};
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Events asked for per page; the API may answer with fewer (it caps `limit` at 500).
const PAGE_SIZE: usize = 200;
/// Without a cursor, re-read this much before the last processing time: `from` filters on the
/// event's time, which may precede its processing.
const OVERLAP: Duration = Duration::hours(1);

/// Why the stream does not run on a site without organization settings.
pub const NOT_CONFIGURED: &str = "not configured: set jira.org_id and jira.org_api_key (an \
                                  organization API key) to sync the organization's audit events";
/// What a 401 from the Admin API means.
pub const WRONG_KEY: &str = "this must be an organization API key from admin.atlassian.com → \
                             Settings → API keys; a site API token does not work here";
/// What a 404 for the organization means.
pub const WRONG_ORG: &str = "org_id does not match this key's organization";
const MISSING_SCOPE: &str =
    "the organization API key lacks the read:events:admin scope (the Admin API answered 403)";

/// `jira.org_events`: keyed by organization, not by site.
pub static TABLE: Table = Table {
    name: "jira.org_events",
    owner: Owner::Org,
    key: &["id"],
    columns: &[
        col("id", Kind::Text),
        col("time", Kind::Timestamptz),
        col("processed_at", Kind::Timestamptz),
        col("action", Kind::Text),
        col("actor_id", Kind::Text),
        col("actor_name", Kind::Text),
        col("actor_email", Kind::Text),
        col("ip", Kind::Text),
        col("product", Kind::Text),
        col("message", Kind::Text),
        col("context", Kind::Jsonb),
        col("container", Kind::Jsonb),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: false,
};

/// A row of `jira.org_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgEventRow {
    pub id: String,
    pub time: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
    pub ip: Option<String>,
    pub product: Option<String>,
    pub message: Option<String>,
    pub context: Option<Value>,
    pub container: Option<Value>,
    pub raw: Value,
}

impl Row for OrgEventRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.time.into(),
            self.processed_at.into(),
            self.action.into(),
            self.actor_id.into(),
            self.actor_name.into(),
            self.actor_email.into(),
            self.ip.into(),
            self.product.into(),
            self.message.into(),
            self.context.into(),
            self.container.into(),
            self.raw.into(),
        ]
    }
}

/// The organization whose events are synced, and the Admin API client.
pub struct OrgSource {
    pub org_id: String,
    /// Where the Admin API is (`jira.admin_base_url`), as messages name it.
    base_url: String,
    client: JiraClient,
}

impl OrgSource {
    /// `None` unless `jira.org_id` and an organization API key are configured.
    pub fn from_settings(settings: &Settings) -> Result<Option<OrgSource>, ConfigError> {
        let (Some(org_id), Some(key)) = (&settings.jira.org_id, &settings.jira.org_api_key) else {
            return Ok(None);
        };
        // The site client's code, with the Admin API's address, key and pacing: one request at
        // a time, since the feed is read page after page anyway.
        let jira = JiraSettings {
            email: String::new(),
            api_token: Some(key.clone()),
            api_token_file: None,
            base_url: settings.jira.admin_base_url.clone(),
            domain: None,
            auth: AuthMode::Bearer,
            ..settings.jira.clone()
        };
        let limits = RateLimitSettings {
            requests_per_second: settings.rate_limit.admin_requests_per_second,
            burst: settings.rate_limit.admin_burst,
            max_in_flight: 1,
            ..settings.rate_limit.clone()
        };
        let client = JiraClient::new(&jira, &limits)
            .map_err(|err| {
                ConfigError::invalid("jira.admin_base_url", format!("cannot be used: {err}"))
            })?
            .without_identity_probe();
        Ok(Some(OrgSource {
            org_id: org_id.clone(),
            base_url: jira.base_url.as_str().trim_end_matches('/').to_owned(),
            client,
        }))
    }

    fn stream_path(&self) -> String {
        format!("/admin/v1/orgs/{}/events-stream", self.org_id)
    }

    /// An Admin API failure as the error the run fails with; `None` for a missing scope,
    /// which skips the stream like the site streams' 403s.
    fn failure(&self, err: JiraError) -> Option<anyhow::Error> {
        let base = &self.base_url;
        match err {
            JiraError::Unauthorized { .. } => Some(
                ConfigError::Invalid {
                    key: "jira.org_api_key".to_owned(),
                    message: format!(
                        "was rejected by the Admin API (401): {WRONG_KEY}; keys also expire \
                         after at most a year"
                    ),
                }
                .into(),
            ),
            JiraError::NotFound { .. } => Some(
                ConfigError::Invalid {
                    key: "jira.org_id".to_owned(),
                    message: format!(
                        "does not match this key's organization (the Admin API answered 404 \
                         for {}): copy the id from admin.atlassian.com/o/<org_id> of the \
                         organization the key was created in",
                        self.org_id
                    ),
                }
                .into(),
            ),
            JiraError::Forbidden { .. } => None,
            other => Some(anyhow::Error::new(other).context(format!(
                "cannot read organization events from the Admin API at {base} \
                 (jira.admin_base_url)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrgEventsCheckpoint {
    /// The organization the cursor belongs to; another org starts from scratch.
    #[serde(default)]
    pub org_id: Option<String>,
    /// The feed's cursor after the last committed page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The latest processing time among the events committed.
    #[serde(default)]
    pub high_water: Option<DateTime<Utc>>,
}

impl Checkpoint for OrgEventsCheckpoint {
    const STREAM: &'static str = "org_events";
    const VERSION: u32 = 1;
}

/// One page of the feed: `{data:[Event], meta:{next, page_size}, links}`.
#[derive(Debug, Deserialize)]
struct PollingPage {
    #[serde(default)]
    data: Option<Vec<RawRecord>>,
    #[serde(default)]
    meta: Option<PageMeta>,
}

#[derive(Debug, Deserialize)]
struct PageMeta {
    #[serde(default)]
    next: Option<String>,
}

/// The organization events stream: where an org id and an organization API key are set, every
/// `sync.org_events_interval_secs`.
pub struct OrgEvents {
    source: Option<OrgSource>,
    schedule: Schedule,
    /// How far back the first run reaches.
    lookback: Duration,
}

impl OrgEvents {
    pub fn new(settings: &Settings) -> Result<OrgEvents, ConfigError> {
        let sync = &settings.sync;
        Ok(OrgEvents {
            source: OrgSource::from_settings(settings)?,
            // Resolved at load: false unless an org id and an org API key are configured.
            schedule: Schedule::every(sync.org_events, sync.org_events_interval_secs),
            lookback: Duration::days(i64::from(sync.audit_lookback_days)),
        })
    }

    async fn load_checkpoint(
        &self,
        ctx: &StreamContext,
        org: &OrgSource,
    ) -> anyhow::Result<Option<OrgEventsCheckpoint>> {
        let cp = checkpoint::load::<OrgEventsCheckpoint>(ctx).await?;
        // A cursor of another organization means nothing for this one.
        Ok(cp.filter(|cp| cp.org_id.as_deref() == Some(org.org_id.as_str())))
    }
}

#[async_trait::async_trait]
impl Stream for OrgEvents {
    fn name(&self) -> &'static str {
        OrgEventsCheckpoint::STREAM
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn configured(&self) -> Result<(), ConfigError> {
        match self.source {
            Some(_) => Ok(()),
            None => Err(ConfigError::invalid(
                "jira.org_api_key",
                "is not set: the org_events stream needs jira.org_id and an organization API \
                 key (jira.org_api_key or jira.org_api_key_file)",
            )),
        }
    }

    async fn mode(&self, ctx: &StreamContext, force_full: bool) -> anyhow::Result<Mode> {
        let Some(org) = &self.source else {
            return Ok(Mode::Full);
        };
        Ok(match self.load_checkpoint(ctx, org).await? {
            Some(_) if !force_full => Mode::Incremental,
            _ => Mode::Full,
        })
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let Some(org) = &self.source else {
            return Ok(StreamStatus::Skipped(NOT_CONFIGURED.to_owned()));
        };
        let mut state = match run.mode {
            Mode::Full => None,
            Mode::Incremental => self.load_checkpoint(ctx, org).await?,
        }
        .unwrap_or_else(|| OrgEventsCheckpoint {
            org_id: Some(org.org_id.clone()),
            ..OrgEventsCheckpoint::default()
        });
        retry_quarantined(ctx, run, self.name(), &org.org_id, |v| parse_org_event(&v)).await?;
        // Before its first answer the Admin API's client knows no clock but this machine's;
        // the site's, read by earlier requests, is Atlassian's too.
        let server_now = match org.client.clock_skew() {
            Some(_) => org.client.server_now(),
            None => ctx.client.server_now(),
        };
        let first_from = server_now - self.lookback;
        let path = org.stream_path();
        loop {
            run.counters.request();
            let query = page_query(&state, first_from);
            let page: PollingPage = match org.client.get(&path, &query).await {
                Ok(page) => page,
                Err(err) => {
                    return match org.failure(err) {
                        Some(failure) => Err(failure),
                        None => Ok(StreamStatus::Skipped(format!(
                            "{MISSING_SCOPE}: create a key with that scope (or without scopes), \
                             or set sync.org_events = false"
                        ))),
                    };
                }
            };
            let data = page.data.unwrap_or_default();
            let next = page.meta.and_then(|m| m.next).filter(|n| !n.is_empty());
            let read = read_records(self.name(), "organization event", data, |v| {
                parse_org_event(&v)
            });
            let rows = read.rows;
            // An empty page, or a cursor that is missing or did not move: nothing more to read
            // now. The cursor is kept, so the next run polls from here.
            let moved = next.is_some() && next != state.cursor;
            if rows.is_empty() && read.set_aside.is_empty() && !moved {
                return Ok(StreamStatus::Done);
            }
            let done = (rows.is_empty() && read.set_aside.is_empty()) || !moved;
            let newest = rows.iter().map(|r| r.processed_at.unwrap_or(r.time));
            state.high_water = newest.chain(state.high_water).max();
            state.cursor = next.or(state.cursor.take());
            let seen = rows.len() + read.set_aside.len();
            let mut page = PageWrite::new(
                self.name(),
                Batch::of(&org.org_id, rows),
                checkpoint::replace(&state)?,
            );
            page.set_aside = read.set_aside;
            let written = ctx.store.write_page(&ctx.site, page).await?;
            run.counters.page(seen, written, run.progress);
            if done {
                return Ok(StreamStatus::Done);
            }
        }
    }

    fn cursor(&self, checkpoint: Option<&Value>) -> Cursor {
        let Some(value) = checkpoint else {
            return Cursor::not_yet();
        };
        match checkpoint::decode::<OrgEventsCheckpoint>(value.clone()) {
            Ok(cp) => Cursor::new(
                cp.high_water,
                "processing time of the last organization event read",
            ),
            Err(_) => Cursor::unreadable(),
        }
    }

    fn rows(&self, _site: &str) -> Option<Count> {
        Some(Count {
            table: &TABLE,
            owner: self.source.as_ref()?.org_id.clone(),
            which: Which::Live,
        })
    }

    /// One cheap request to the feed with the configured key and organization. Its problems
    /// are reported, never fatal: the site's streams sync regardless.
    async fn probe(&self, _probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        let Some(org) = &self.source else {
            return Some(Ok(Availability::NotConfigured {
                reason: NOT_CONFIGURED.to_owned(),
            }));
        };
        let query = [("limit", "1".to_owned())];
        let result = org.client.get::<Value>(&org.stream_path(), &query).await;
        let unreadable = |reason: String, fix: &str| Availability::Unreadable {
            reason,
            fix: fix.to_owned(),
        };
        Some(Ok(match result {
            Ok(_) => Availability::Readable {
                detail: Some(format!(
                    "organization {}: key valid, events readable",
                    org.org_id
                )),
            },
            Err(JiraError::Unauthorized { .. }) => unreadable(
                format!("the Admin API rejected jira.org_api_key (401): {WRONG_KEY}"),
                "create an organization API key in admin.atlassian.com → Settings → API keys \
                 and set it as jira.org_api_key (or JIRA_SYNC__JIRA__ORG_API_KEY)",
            ),
            Err(JiraError::NotFound { .. }) => unreadable(
                format!(
                    "{WRONG_ORG} (the Admin API answered 404 for {})",
                    org.org_id
                ),
                "copy the id from admin.atlassian.com/o/<org_id> of the organization the key \
                 was created in",
            ),
            Err(JiraError::Forbidden { .. }) => unreadable(
                MISSING_SCOPE.to_owned(),
                "create a key with the read:events:admin scope (or without scopes), or set \
                 sync.org_events = false",
            ),
            Err(other) => unreadable(
                other.to_string(),
                "check jira.admin_base_url and the network, then run check again",
            ),
        }))
    }

    fn clients(&self) -> Vec<JiraClient> {
        self.source.iter().map(|org| org.client.clone()).collect()
    }
}

/// A cursor carries the query; without one, ask from the start of what is missing. `to` is
/// left out so that a cursor can never be pinned to an end that new events then pass.
fn page_query(state: &OrgEventsCheckpoint, first_from: DateTime<Utc>) -> Vec<(&str, String)> {
    let limit = ("limit", PAGE_SIZE.to_string());
    match &state.cursor {
        Some(cursor) => vec![("cursor", cursor.clone()), limit],
        None => {
            let from = state.high_water.map_or(first_from, |hw| hw - OVERLAP);
            let from = ("from", from.timestamp_millis().to_string());
            vec![("sortOrder", "asc".to_owned()), from, limit]
        }
    }
}

/// Reads one organization event into a row.
pub fn parse_org_event(value: &Value) -> Result<OrgEventRow, ParseError> {
    let r = Record::new("organization event", value, &["id"]);
    Ok(OrgEventRow {
        id: r.req_str("id")?,
        time: r.req_ts("attributes.time")?,
        processed_at: r.opt_ts("attributes.processedAt")?,
        action: r.opt_str("attributes.action")?,
        actor_id: r.opt_str("attributes.actor.id")?,
        actor_name: r.opt_str("attributes.actor.name")?,
        actor_email: r.opt_str("attributes.actor.email")?,
        ip: r.opt_str("attributes.location.ip")?,
        product: product_of(&r)?,
        message: r.opt_str("message.content")?,
        context: r.opt_json("attributes.context"),
        container: r.opt_json("attributes.container"),
        raw: value.clone(),
    })
}

/// Products whose events carry the product as their action's prefix (`jira_…`).
const PRODUCTS: [&str; 8] = [
    "jira",
    "confluence",
    "bitbucket",
    "opsgenie",
    "statuspage",
    "trello",
    "loom",
    "compass",
];

/// Events have no product field of their own: the first `product` attribute of a container
/// (where it happened) or context item (what it touched), else the action's product prefix.
fn product_of(r: &Record<'_>) -> Result<Option<String>, ParseError> {
    for list in ["attributes.container", "attributes.context"] {
        let Some(items) = r.get(list) else { continue };
        let Some(items) = items.as_array() else {
            return Err(ParseError {
                entity: "organization event",
                record: format!("id={}", r.opt_str("id")?.unwrap_or_default()),
                field: list.to_owned(),
                detail: "should be an array".to_owned(),
            });
        };
        let named = items
            .iter()
            .filter_map(|item| item.pointer("/attributes/product")?.as_str());
        if let Some(product) = named.into_iter().next() {
            return Ok(Some(product.to_ascii_lowercase()));
        }
    }
    let action = r.opt_str("attributes.action")?.unwrap_or_default();
    let prefix = action.split('_').next().unwrap_or_default();
    Ok(PRODUCTS
        .iter()
        .find(|p| **p == prefix)
        .map(|p| (*p).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_reads_into_typed_columns_and_its_product_from_the_container() {
        let v = json!({
            "id": "a1000001-0000-4000-8000-000000000001", "type": "events",
            "attributes": {
                "time": "2026-05-19T10:00:00.000Z", "processedAt": "2026-05-19T10:00:01.000Z",
                "action": "product_access_granted",
                "actor": {"id": "712020:aa", "name": "Alice Johnson", "email": "alice@example.com"},
                "container": [{"id": "s1", "type": "sites",
                               "attributes": {"product": "Confluence"}}],
                "location": {"ip": "198.51.100.10", "countryName": "Example"}
            },
            "message": {"content": "Alice Johnson granted access", "format": "simple"}
        });
        let row = parse_org_event(&v).expect("readable");
        assert_eq!(row.id, "a1000001-0000-4000-8000-000000000001");
        assert_eq!(row.product.as_deref(), Some("confluence"));
        assert_eq!(row.ip.as_deref(), Some("198.51.100.10"));
        assert_eq!(row.actor_email.as_deref(), Some("alice@example.com"));
        assert!(row.processed_at > Some(row.time));
        assert_eq!(row.context, None);
    }

    #[test]
    fn a_saved_cursor_is_the_whole_query_and_without_one_the_feed_is_asked_from_a_time() {
        let start = DateTime::from_timestamp_millis(1_700_000_000_000).expect("time");
        let mut state = OrgEventsCheckpoint::default();
        let first = page_query(&state, start);
        assert_eq!(first[0], ("sortOrder", "asc".to_owned()));
        assert_eq!(first[1], ("from", "1700000000000".to_owned()));
        state.high_water = Some(start + Duration::days(1));
        let again = page_query(&state, start);
        assert_eq!(
            again[1],
            ("from", "1700082800000".to_owned()),
            "an hour of overlap"
        );
        state.cursor = Some("c1".to_owned());
        let polled = page_query(&state, start);
        assert_eq!(
            polled,
            vec![("cursor", "c1".to_owned()), ("limit", "200".to_owned())]
        );
    }

    #[test]
    fn the_product_falls_back_to_the_action_prefix_and_bad_fields_name_the_event() {
        let v = json!({"id": "e2", "attributes": {"time": "2026-05-19T10:00:00Z",
            "action": "bitbucket_repository_created"}});
        assert_eq!(
            parse_org_event(&v).expect("readable").product.as_deref(),
            Some("bitbucket")
        );
        let login = json!({"id": "e3", "attributes": {"time": "2026-05-19T10:00:00Z",
            "action": "user_login"}});
        assert_eq!(parse_org_event(&login).expect("readable").product, None);
        let bad = json!({"id": "e4", "attributes": {"time": "yesterday"}});
        let err = parse_org_event(&bad).expect_err("not a time");
        assert!(err.to_string().contains("id=e4"), "{err}");
        assert_eq!(err.field, "attributes.time");
        let bad = json!({"id": "e5", "attributes": {"time": "2026-05-19T10:00:00Z",
            "container": {"id": "x"}}});
        assert_eq!(
            parse_org_event(&bad).expect_err("not a list").field,
            "attributes.container"
        );
    }
}
