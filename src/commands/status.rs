//! `jira-sync status`: prints [`crate::engine::status`]'s report, as text or as one JSON object.

use crate::engine::status::{LastRun, StatusReport, collect};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `jira-sync status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Print the status as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
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
                    "exit_code": super::exit::code_for(&err),
                });
                println!("{failure}");
            }
            return Err(err);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The report for people: a block per stream.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let writer = match (&report.writer, report.writer_active) {
        (Some(holder), _) => format!("held by {holder}"),
        (None, true) => "a jira-sync process holds the writer lease".to_owned(),
        (None, false) => "no jira-sync process holds the writer lease".to_owned(),
    };
    let _ = writeln!(out, "Site      {}", report.site);
    let _ = writeln!(out, "Database  {}", report.database);
    let _ = writeln!(out, "Writer    {writer}");
    for name in &report.order {
        let Some(s) = report.streams.get(*name) else {
            continue;
        };
        let disabled = if s.enabled {
            ""
        } else {
            " (disabled in [sync])"
        };
        let _ = writeln!(out, "\n{name}{disabled}");
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
        let what = s
            .rows_note
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  rows          {}{what}", s.rows);
        if s.set_aside > 0 {
            let _ = writeln!(
                out,
                "  set aside     {} records in jira.quarantine (they cannot be stored as Jira \
                 sends them; retried every run)",
                s.set_aside
            );
        }
        // The records of issues ride on the issues stream: shown under it.
        if *name == "issues" && !report.records.is_empty() {
            let _ = writeln!(out, "  records of issues");
            for (kind, r) in &report.records {
                let mut line = format!("    {kind:<12} {:>9} rows", r.rows);
                if r.issues_behind > 0 {
                    let _ = write!(
                        line,
                        ", {} issues to read at their current version",
                        r.issues_behind
                    );
                }
                if r.set_aside > 0 {
                    let _ = write!(line, ", {} set aside in jira.quarantine", r.set_aside);
                }
                let _ = writeln!(out, "{line}");
            }
        }
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
}
