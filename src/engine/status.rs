//! The status of every stream of a site, read from the database only (`jira.sync_runs`,
//! `jira.sync_state`, the tables): the last successful run, the last run and its error, the
//! cursor as a time, the rows held, and how far behind each stream is. `jira-sync status`
//! prints it; the daemon's `/metrics` reads it. It works while the daemon runs, after it
//! stopped, and when Jira is down.

use crate::settings::Settings;
use crate::store::status::{Count, StatusReader, Which};
use crate::streams::Registry;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub ok: bool,
    pub site: String,
    /// `host:port/database`, without credentials.
    pub database: String,
    pub checked_at: DateTime<Utc>,
    /// Whether a jira-sync process (`run`, or `sync --once`) holds the site's writer lease.
    pub writer_active: bool,
    /// Who holds it (`jira-sync run on <host> pid <pid>, connected since …`).
    pub writer: Option<String>,
    /// Keyed by stream name (`projects`, `issues`, `users`, `audit_records`, `org_events`,
    /// `census`).
    pub streams: BTreeMap<String, StreamReport>,
    /// The stream names in the order the registry lists them.
    #[serde(skip)]
    pub order: Vec<&'static str>,
    /// The records of issues `[sync]` enables (`changelogs`, `comments`, `worklogs`,
    /// `issue_links`), read with the issues stream.
    pub records: BTreeMap<String, RecordsReport>,
}

/// One kind of records of issues.
#[derive(Debug, Clone, Serialize)]
pub struct RecordsReport {
    /// Its table.
    pub table: String,
    /// Live rows.
    pub rows: i64,
    /// Live issues whose records are not read at their current version yet: the next issues
    /// run reads them.
    pub issues_behind: i64,
    /// Records held in `jira.quarantine`.
    pub set_aside: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Whether `[sync]` enables the stream.
    pub enabled: bool,
    /// When the last successful run finished.
    pub last_success: Option<DateTime<Utc>>,
    /// Seconds from `last_success` to now.
    pub since_last_success_secs: Option<i64>,
    pub last_run: Option<LastRun>,
    /// Everything before this instant is in the database (issues: the oldest project mark;
    /// audit records and organization events: the high-water mark; census: when it last
    /// completed). Full-refresh streams have none.
    pub cursor: Option<DateTime<Utc>>,
    /// Seconds from `cursor` to now.
    pub cursor_behind_secs: Option<i64>,
    /// What the cursor is, in words.
    pub cursor_note: Option<String>,
    /// Live rows (census: issues marked deleted).
    pub rows: i64,
    /// What the rows are when they are not the stream's live rows ("issues marked deleted").
    #[serde(skip)]
    pub rows_note: Option<String>,
    /// Records held in `jira.quarantine`: they cannot be stored as Jira sends them, and are
    /// retried on every run.
    pub set_aside: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// `running`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    pub mode: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub rows_seen: i64,
    pub rows_written: i64,
    pub requests: i64,
}

/// Reads the status of every stream of the configured site.
pub async fn collect(settings: &Settings) -> anyhow::Result<StatusReport> {
    let registry = Registry::new(settings)?;
    let url = settings.database.require_url()?;
    let mut db = StatusReader::open(&settings.database).await?;
    let site = settings.site();
    if !db.migrated().await? {
        anyhow::bail!(
            "the database has no jira schema yet: run `jira-sync migrate` or start `jira-sync run`"
        );
    }
    let now = Utc::now();
    let successes = db.last_successes(&site).await?;
    let mut last_runs = db.last_runs(&site).await?;
    let checkpoints = db.checkpoints(&site).await?;
    let writer_active = db.writer_active(&site).await?;
    let writer = db.writer(&site).await?;
    let quarantined = db.quarantined(&site).await?;
    let mut streams = BTreeMap::new();
    for stream in registry.iter() {
        let name = stream.name();
        let cursor = stream.cursor(checkpoints.get(name));
        let last_success = successes.get(name).copied();
        let (rows, rows_note) = match stream.rows(&site) {
            Some(count) => {
                let note = (count.which == Which::Deleted).then(|| {
                    let table = count.table.name.trim_start_matches("jira.");
                    format!("{table} marked deleted")
                });
                (db.count(&count).await?, note)
            }
            None => (0, None),
        };
        let report = StreamReport {
            enabled: stream.schedule().enabled,
            last_success,
            since_last_success_secs: last_success.map(|t| (now - t).num_seconds()),
            last_run: last_runs.remove(name).map(|r| LastRun {
                status: r.status,
                mode: r.mode,
                started_at: r.started_at,
                finished_at: r.finished_at,
                error: r.error,
                rows_seen: r.rows_seen,
                rows_written: r.rows_written,
                requests: r.requests,
            }),
            cursor: cursor.at,
            cursor_behind_secs: cursor.at.map(|t| (now - t).num_seconds()),
            cursor_note: cursor.note,
            rows,
            rows_note,
            set_aside: quarantined.get(name).copied().unwrap_or(0),
        };
        streams.insert(name.to_owned(), report);
    }
    let mut records = BTreeMap::new();
    for child in crate::streams::issue_children(settings)? {
        let Some(table) = child.tables().first() else {
            continue;
        };
        let count = Count {
            table: table.table,
            owner: site.clone(),
            which: Which::Live,
        };
        records.insert(
            child.name().to_owned(),
            RecordsReport {
                table: table.table.name.to_owned(),
                rows: db.count(&count).await?,
                issues_behind: db.count_behind(&site, child.name()).await?,
                set_aside: quarantined.get(child.name()).copied().unwrap_or(0),
            },
        );
    }
    Ok(StatusReport {
        ok: true,
        records,
        site,
        database: crate::store::describe_url(url),
        checked_at: now,
        writer_active,
        writer,
        streams,
        order: registry.names(),
    })
}
