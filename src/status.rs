//! `jira-sync status`: per stream, the last successful run, the last run and its error, the
//! cursor as a time, the rows held, and how far behind each stream is. It reads only the
//! database (`jira.sync_runs`, `jira.sync_state`, the tables), so it works while the daemon
//! runs, after it stopped, and when Jira is down.

use crate::config::Settings;
use crate::streams::StreamKind;
use crate::streams::audit::AuditCheckpoint;
use crate::streams::census::CensusCheckpoint;
use crate::streams::issues::IssuesCheckpoint;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `jira-sync status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Print the status as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The streams in the order the report lists them: the data streams, then the census.
const ORDER: [StreamKind; 6] = [
    StreamKind::Projects,
    StreamKind::Issues,
    StreamKind::Users,
    StreamKind::AuditRecords,
    StreamKind::OrgEvents,
    StreamKind::Census,
];

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub ok: bool,
    pub site: String,
    /// `host:port/database`, without credentials.
    pub database: String,
    pub checked_at: DateTime<Utc>,
    /// Whether a `jira-sync run` holds the site's writer lease right now.
    pub writer_active: bool,
    /// Keyed by stream name (`projects`, `issues`, `users`, `audit_records`, `org_events`,
    /// `census`).
    pub streams: BTreeMap<String, StreamReport>,
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

/// `jira-sync status`: prints the report; exit 7 when the database cannot be reached.
pub async fn command(settings: &Settings, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    match collect(settings).await {
        Ok(report) if args.json => println!("{}", serde_json::to_string(&report)?),
        Ok(report) => print!("{}", render_text(&report)),
        Err(err) => {
            // Scripts reading `--json` get an object even when the database is unreachable.
            if args.json {
                let failure = serde_json::json!({
                    "ok": false,
                    "error": format!("{err:#}"),
                    "exit_code": crate::exit::code_for(&err),
                });
                println!("{failure}");
            }
            return Err(err);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the status of every stream of the configured site.
pub async fn collect(settings: &Settings) -> anyhow::Result<StatusReport> {
    let url = settings.database.require_url()?;
    let mut conn = crate::sync::lease::connect_one(url).await?;
    let site = settings.site();
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('jira.sync_runs') IS NOT NULL")
        .fetch_one(&mut conn)
        .await?;
    if !migrated {
        anyhow::bail!(
            "the database has no jira schema yet: run `jira-sync migrate` or start `jira-sync run`"
        );
    }
    let now = Utc::now();
    let successes = last_successes(&mut conn, &site).await?;
    let mut last_runs = last_runs(&mut conn, &site).await?;
    let checkpoints = checkpoints(&mut conn, &site).await?;
    let org_id = settings.jira.org_id.as_deref();
    let rows = row_counts(&mut conn, &site, org_id).await?;
    let writer_active = crate::sync::lease::is_held(&mut conn, &site).await?;
    let mut streams = BTreeMap::new();
    for stream in ORDER {
        let (cursor, cursor_note) = cursor_of(stream, checkpoints.get(stream.name()));
        let last_success = successes.get(stream.name()).copied();
        let report = StreamReport {
            enabled: stream.enabled_in(&settings.sync),
            last_success,
            since_last_success_secs: last_success.map(|t| (now - t).num_seconds()),
            last_run: last_runs.remove(stream.name()),
            cursor,
            cursor_behind_secs: cursor.map(|t| (now - t).num_seconds()),
            cursor_note,
            rows: rows.get(&stream).copied().unwrap_or(0),
        };
        streams.insert(stream.name().to_owned(), report);
    }
    Ok(StatusReport {
        ok: true,
        site,
        database: crate::store::describe_url(url),
        checked_at: now,
        writer_active,
        streams,
    })
}

/// When each stream of `site` last finished a run successfully.
pub async fn last_successes<'e>(
    db: impl PgExecutor<'e>,
    site: &str,
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT stream, max(finished_at) FROM jira.sync_runs \
         WHERE site = $1 AND status = 'succeeded' AND finished_at IS NOT NULL GROUP BY stream",
    )
    .bind(site)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

type RunRow = (
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    i64,
    i64,
    i64,
);

async fn last_runs(
    conn: &mut PgConnection,
    site: &str,
) -> anyhow::Result<HashMap<String, LastRun>> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT DISTINCT ON (stream) stream, status, mode, started_at, finished_at, error, \
         rows_seen, rows_written, requests FROM jira.sync_runs WHERE site = $1 \
         ORDER BY stream, started_at DESC, id DESC",
    )
    .bind(site)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let run = LastRun {
                status: r.1,
                mode: r.2,
                started_at: r.3,
                finished_at: r.4,
                error: r.5,
                rows_seen: r.6,
                rows_written: r.7,
                requests: r.8,
            };
            (r.0, run)
        })
        .collect())
}

async fn checkpoints(
    conn: &mut PgConnection,
    site: &str,
) -> anyhow::Result<HashMap<String, Value>> {
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT stream, checkpoint FROM jira.sync_state WHERE site = $1")
            .bind(site)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Rows per stream; organization events belong to the organization, not the site.
async fn row_counts(
    conn: &mut PgConnection,
    site: &str,
    org_id: Option<&str>,
) -> anyhow::Result<HashMap<StreamKind, i64>> {
    let counts: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
           (SELECT count(*) FROM jira.projects WHERE site = $1 AND deleted_at IS NULL), \
           (SELECT count(*) FROM jira.issues WHERE site = $1 AND deleted_at IS NULL), \
           (SELECT count(*) FROM jira.users WHERE site = $1), \
           (SELECT count(*) FROM jira.audit_records WHERE site = $1), \
           (SELECT count(*) FROM jira.org_events WHERE org_id = $2), \
           (SELECT count(*) FROM jira.issues WHERE site = $1 AND deleted_at IS NOT NULL)",
    )
    .bind(site)
    .bind(org_id)
    .fetch_one(conn)
    .await?;
    Ok(HashMap::from([
        (StreamKind::Projects, counts.0),
        (StreamKind::Issues, counts.1),
        (StreamKind::Users, counts.2),
        (StreamKind::AuditRecords, counts.3),
        (StreamKind::OrgEvents, counts.4),
        (StreamKind::Census, counts.5),
    ]))
}

/// The stream's cursor as a time, and a note saying what it is.
fn cursor_of(
    stream: StreamKind,
    checkpoint: Option<&Value>,
) -> (Option<DateTime<Utc>>, Option<String>) {
    let unreadable = || (None, Some("the checkpoint is unreadable".to_owned()));
    match (stream, checkpoint) {
        (StreamKind::Projects | StreamKind::Users, _) => {
            (None, Some("none: refreshed in full each run".to_owned()))
        }
        (_, None) => (
            None,
            Some("none yet: the first run starts from the beginning".to_owned()),
        ),
        (StreamKind::Issues, Some(value)) => {
            let Ok(cp) = serde_json::from_value::<IssuesCheckpoint>(value.clone()) else {
                return unreadable();
            };
            let oldest = cp.projects.values().filter_map(|p| p.mark).min();
            let unfinished = cp.projects.values().filter(|p| !p.complete).count();
            let mut note = format!("oldest mark of {} projects", cp.projects.len());
            if unfinished > 0 {
                let _ = write!(note, "; {unfinished} not yet read to the end");
            }
            (oldest, Some(note))
        }
        (StreamKind::AuditRecords, Some(value)) => {
            match serde_json::from_value::<AuditCheckpoint>(value.clone()) {
                Ok(cp) => (
                    cp.high_water,
                    Some("high-water mark of record creation".to_owned()),
                ),
                Err(_) => unreadable(),
            }
        }
        (StreamKind::OrgEvents, Some(value)) => {
            match serde_json::from_value::<crate::streams::org_events::OrgEventsCheckpoint>(
                value.clone(),
            ) {
                Ok(cp) => (
                    cp.high_water,
                    Some("processing time of the last organization event read".to_owned()),
                ),
                Err(_) => unreadable(),
            }
        }
        (StreamKind::Census, Some(value)) => {
            match serde_json::from_value::<CensusCheckpoint>(value.clone()) {
                Ok(cp) => (
                    cp.last_completed,
                    Some("when the last census completed".to_owned()),
                ),
                Err(_) => unreadable(),
            }
        }
    }
}

/// The report for people: a block per stream.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let writer = match report.writer_active {
        true => "a jira-sync run holds the writer lease",
        false => "no jira-sync run holds the writer lease",
    };
    let _ = writeln!(out, "Site      {}", report.site);
    let _ = writeln!(out, "Database  {}", report.database);
    let _ = writeln!(out, "Writer    {writer}");
    for stream in ORDER {
        let Some(s) = report.streams.get(stream.name()) else {
            continue;
        };
        let disabled = if s.enabled {
            ""
        } else {
            " (disabled in [sync])"
        };
        let _ = writeln!(out, "\n{}{disabled}", stream.name());
        let success = match (s.last_success, s.since_last_success_secs) {
            (Some(at), Some(ago)) => format!("{} ({} ago)", time(at), human(ago)),
            _ => "never".to_owned(),
        };
        let _ = writeln!(out, "  last success  {success}");
        let _ = writeln!(
            out,
            "  last run      {}",
            last_run_text(s.last_run.as_ref())
        );
        let cursor = match (s.cursor, s.cursor_behind_secs) {
            (Some(at), Some(behind)) => format!("{}, {} behind", time(at), human(behind)),
            _ => "-".to_owned(),
        };
        let note = s
            .cursor_note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  cursor        {cursor}{note}");
        let what = if stream == StreamKind::Census {
            " issues marked deleted"
        } else {
            ""
        };
        let _ = writeln!(out, "  rows          {}{what}", s.rows);
    }
    out
}

fn last_run_text(run: Option<&LastRun>) -> String {
    let Some(run) = run else {
        return "none".to_owned();
    };
    let mut text = format!(
        "{} ({}, started {}",
        run.status,
        run.mode,
        time(run.started_at)
    );
    if let Some(end) = run.finished_at {
        let _ = write!(
            text,
            ", took {}",
            human((end - run.started_at).num_seconds())
        );
    }
    let _ = write!(text, ", {} rows, {} requests)", run.rows_seen, run.requests);
    if let Some(error) = &run.error {
        let _ = write!(text, ": {error}");
    }
    text
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `0s`, `42s`, `3m 2s`, `5h 1m`, `2d 3h`: two units are enough to read a lag.
fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_read_in_the_two_largest_units() {
        assert_eq!(human(-3), "0s");
        assert_eq!(human(42), "42s");
        assert_eq!(human(182), "3m 2s");
        assert_eq!(human(5 * 3600 + 61), "5h 1m");
        assert_eq!(human(2 * 86_400 + 3 * 3600 + 5), "2d 3h");
    }

    #[test]
    fn the_issues_cursor_is_the_oldest_project_mark() {
        let value = serde_json::json!({"version": 1, "projects": {
            "1": {"key": "A", "mark": "2026-01-02T00:00:00Z", "complete": true},
            "2": {"key": "B", "mark": "2026-01-01T00:00:00Z", "complete": false},
        }});
        let (cursor, note) = cursor_of(StreamKind::Issues, Some(&value));
        assert_eq!(
            cursor.map(|c| c.to_rfc3339()),
            Some("2026-01-01T00:00:00+00:00".to_owned())
        );
        let note = note.unwrap_or_default();
        assert!(
            note.contains("2 projects") && note.contains("1 not yet"),
            "{note}"
        );
    }

    #[test]
    fn full_refresh_streams_have_no_cursor() {
        assert_eq!(cursor_of(StreamKind::Users, None).0, None);
        assert_eq!(
            cursor_of(StreamKind::Projects, Some(&serde_json::json!({}))).0,
            None
        );
    }
}
