//! Jira audit records: `/rest/api/2/auditing/record` in a fixed `from`–`to` window, offset
//! paging inside it, stopping on a short or empty page (never on `total`, which counts the
//! whole log), deduplicated by id. Needs Administer Jira: without it the stream is skipped.
//!
//! Checkpoint (stream `audit_records`): `{"version":1,"high_water":..,"window":..}`. A window
//! ends `sync.audit_lag_secs` before its start, so no record can still arrive inside it, and its offsets are
//! stable; the window and the next offset are saved with every page, so a crash resumes where
//! it stopped. When the window is done, `high_water` moves to its end.

use super::checkpoint::{self, Checkpoint};
use super::parse::{ParseError, Record, read_records};
use super::{
    Availability, Cursor, Mode, Probe, Run, Schedule, Stream, StreamContext, StreamStatus,
    retry_quarantined,
};
use crate::jira::JiraError;
use crate::jira::model::AuditPage;
use crate::settings::Settings;
use crate::store::status::{Count, Which};
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;

const PAGE_SIZE: usize = 1000;
/// Re-read this much before the high-water mark: records may be indexed late.
const OVERLAP: Duration = Duration::minutes(10);
/// What to do when the audit log cannot be read.
const AUDIT_FIX: &str = "add the account to a group with the global permission Administer Jira \
                         (ADMINISTER), or set sync.audit_records = false";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    #[serde(default)]
    pub high_water: Option<DateTime<Utc>>,
    #[serde(default)]
    pub window: Option<Window>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub next_offset: usize,
}

impl Checkpoint for AuditCheckpoint {
    const STREAM: &'static str = "audit_records";
    const VERSION: u32 = 1;
}

/// `jira.audit_records`.
pub static TABLE: Table = Table {
    name: "jira.audit_records",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("created", Kind::Timestamptz),
        col("category", Kind::Text),
        col("summary", Kind::Text),
        col("description", Kind::Text),
        col("event_source", Kind::Text),
        col("author_account_id", Kind::Text),
        col("remote_address", Kind::Text),
        col("object_item", Kind::Jsonb),
        col("changed_values", Kind::Jsonb),
        col("associated_items", Kind::Jsonb),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: false,
};

/// A row of `jira.audit_records`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub created: DateTime<Utc>,
    pub category: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub event_source: Option<String>,
    pub author_account_id: Option<String>,
    pub remote_address: Option<String>,
    pub object_item: Option<Value>,
    pub changed_values: Option<Value>,
    pub associated_items: Option<Value>,
    pub raw: Value,
}

impl Row for AuditRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.created.into(),
            self.category.into(),
            self.summary.into(),
            self.description.into(),
            self.event_source.into(),
            self.author_account_id.into(),
            self.remote_address.into(),
            self.object_item.into(),
            self.changed_values.into(),
            self.associated_items.into(),
            self.raw.into(),
        ]
    }
}

/// The audit records stream: incremental, every `sync.audit_interval_secs`.
pub struct Audit {
    schedule: Schedule,
    /// How far back the first run reaches.
    lookback: Duration,
    /// A window ends this long before its run starts.
    lag: Duration,
}

impl Audit {
    pub fn new(settings: &Settings) -> Audit {
        let sync = &settings.sync;
        Audit {
            schedule: Schedule::every(sync.audit_records, sync.audit_interval_secs),
            lookback: Duration::days(i64::from(sync.audit_lookback_days)),
            lag: Duration::seconds(i64::try_from(sync.audit_lag_secs).unwrap_or(60)),
        }
    }
}

#[async_trait::async_trait]
impl Stream for Audit {
    fn name(&self) -> &'static str {
        AuditCheckpoint::STREAM
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["audit"]
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    async fn mode(&self, ctx: &StreamContext, force_full: bool) -> anyhow::Result<Mode> {
        if force_full {
            return Ok(Mode::Full);
        }
        Ok(match checkpoint::load::<AuditCheckpoint>(ctx).await? {
            Some(_) => Mode::Incremental,
            None => Mode::Full,
        })
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        retry_quarantined(ctx, run, AuditCheckpoint::STREAM, &ctx.site, |v| {
            parse_audit_record(&v)
        })
        .await?;
        self.read(ctx, run).await
    }

    fn cursor(&self, checkpoint: Option<&Value>) -> Cursor {
        let Some(value) = checkpoint else {
            return Cursor::not_yet();
        };
        match checkpoint::decode::<AuditCheckpoint>(value.clone()) {
            Ok(cp) => Cursor::new(cp.high_water, "high-water mark of record creation"),
            Err(_) => Cursor::unreadable(),
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
        let path = probe.client.rest("auditing/record");
        let one = [("limit", "1".to_owned())];
        Some(probe.request(&path, &one).await.map(|answer| match answer {
            Ok(_) => Availability::Readable { detail: None },
            Err(refusal) => refusal.unreadable(AUDIT_FIX),
        }))
    }
}

impl Audit {
    async fn read(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let counters = run.counters;
        let checkpoint = match run.mode {
            Mode::Full => AuditCheckpoint::default(),
            Mode::Incremental => checkpoint::load::<AuditCheckpoint>(ctx)
                .await?
                .unwrap_or_default(),
        };
        let now = ctx.client.server_now();
        let (lookback, lag) = (self.lookback, self.lag);
        let mut window = checkpoint.window.clone().unwrap_or_else(|| Window {
            from: checkpoint
                .high_water
                .map_or(now - lookback, |hw| hw - OVERLAP),
            to: now - lag,
            next_offset: 0,
        });
        let mut seen: HashSet<i64> = HashSet::new();
        loop {
            counters.request();
            let query = [
                ("offset", window.next_offset.to_string()),
                ("limit", PAGE_SIZE.to_string()),
                ("from", iso(window.from)),
                ("to", iso(window.to)),
            ];
            let page: AuditPage = match ctx.client.get("/rest/api/2/auditing/record", &query).await
            {
                Ok(page) => page,
                Err(err @ JiraError::Scope { .. }) => {
                    return Ok(StreamStatus::Skipped(err.to_string()));
                }
                Err(JiraError::Forbidden { .. }) => {
                    return Ok(StreamStatus::Skipped(
                        "the account lacks the Administer Jira global permission (Jira answered \
                     403; the audit log also needs a paid Jira plan); grant it to sync audit \
                     records"
                            .to_string(),
                    ));
                }
                Err(err) => return Err(err.into()),
            };
            let fetched = page.records.len();
            let limit = page
                .limit
                .and_then(|l| usize::try_from(l).ok())
                .filter(|l| *l > 0)
                .unwrap_or(PAGE_SIZE)
                .min(PAGE_SIZE);
            let read = read_records(AuditCheckpoint::STREAM, "audit record", page.records, |v| {
                parse_audit_record(&v)
            });
            let mut rows = read.rows;
            rows.retain(|r| seen.insert(r.id));
            if fetched > 0 && fetched >= limit && rows.is_empty() && read.set_aside.is_empty() {
                anyhow::bail!(
                    "the audit log answered offset {} with {fetched} records already read: the \
                     server does not page as Jira does; the window stays where it was",
                    window.next_offset
                );
            }
            let last = fetched == 0 || fetched < limit;
            window.next_offset += fetched;
            let next = if last {
                AuditCheckpoint {
                    high_water: Some(window.to),
                    window: None,
                }
            } else {
                AuditCheckpoint {
                    high_water: checkpoint.high_water,
                    window: Some(window.clone()),
                }
            };
            let count = rows.len() + read.set_aside.len();
            let mut page = PageWrite::new(
                AuditCheckpoint::STREAM,
                Batch::of(&ctx.site, rows),
                checkpoint::replace(&next)?,
            );
            page.set_aside = read.set_aside;
            let written = ctx.store.write_page(&ctx.site, page).await?;
            counters.page(count, written, run.progress);
            if last {
                return Ok(StreamStatus::Done);
            }
        }
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads one audit record into a row.
pub fn parse_audit_record(value: &Value) -> Result<AuditRow, ParseError> {
    let r = Record::new("audit record", value, &["id"]);
    Ok(AuditRow {
        id: r.req_id("id")?,
        created: r.req_ts("created")?,
        category: r.opt_str("category")?,
        summary: r.opt_str("summary")?,
        description: r.opt_str("description")?,
        event_source: r.opt_str("eventSource")?,
        // Data Center names the author by user key only (Cloud sends an empty `authorKey`).
        author_account_id: match r.opt_str("authorAccountId")? {
            Some(id) => Some(id),
            None => r.opt_str("authorKey")?.filter(|k| !k.is_empty()),
        },
        remote_address: r.opt_str("remoteAddress")?,
        object_item: r.opt_json("objectItem"),
        changed_values: r.opt_json("changedValues"),
        associated_items: r.opt_json("associatedItems"),
        raw: value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_author_is_the_account_id_on_cloud_and_the_user_key_on_data_center() {
        let cloud = json!({"id": 1, "created": "2025-03-04T10:15:27.120+0000",
                           "authorKey": "", "authorAccountId": "5b10ac8d82e05b22cc7d4ef5"});
        let dc = json!({"id": 2, "created": "2025-03-04T10:15:27.120+0000",
                        "authorKey": "JIRAUSER10100"});
        let system = json!({"id": 3, "created": "2025-03-04T10:15:27.120+0000", "authorKey": ""});
        let author = |v: &Value| parse_audit_record(v).expect("parses").author_account_id;
        assert_eq!(author(&cloud).as_deref(), Some("5b10ac8d82e05b22cc7d4ef5"));
        assert_eq!(author(&dc).as_deref(), Some("JIRAUSER10100"));
        assert_eq!(author(&system), None);
    }
}
