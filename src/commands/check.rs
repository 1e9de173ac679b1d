//! `jira-sync check`: can the daemon reach the site, as whom, and which streams may it sync?
//! The check itself is [`crate::engine::check`]; this prints it.

use crate::engine::check::{CheckReport, run_with};
use crate::engine::connect::client_for_check;
use crate::settings::Settings;
use crate::streams::Registry;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `jira-sync check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `jira-sync check`: prints the report and exits 0 when the daemon can sync.
pub async fn command(settings: &Settings, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(settings)?;
    let mut client = None;
    let report = match client_for_check(settings).await {
        Ok(connected) => run_with(settings, client.insert(connected), &registry).await,
        Err(err) => Err(err),
    };
    let report = match report {
        Ok(report) => report,
        Err(err) => {
            // Scripts reading `--json` get an object even when the check cannot connect; the
            // message also goes to stderr and the exit code says the kind.
            if args.json {
                let failure = serde_json::json!({
                    "ok": false,
                    "error": err.to_string(),
                    "exit_code": super::exit::code(err.failure()),
                });
                println!("{failure}");
            }
            return Err(err.into());
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    if let Some(client) = &client {
        tracing::debug!(metrics = ?client.metrics(), "check finished");
    }
    report.require_browse()?;
    Ok(ExitCode::SUCCESS)
}

/// The human-readable report: a few aligned lines, one per stream.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let status = if report.ok {
        "connected"
    } else {
        "connected, but the account cannot browse projects"
    };
    let _ = writeln!(out, "{status}: {} ({})", report.site, report.base_url);
    let a = &report.account;
    let name = a.display_name.as_deref().unwrap_or("(no display name)");
    let _ = match &a.email {
        Some(email) => writeln!(out, "  account     {name} <{email}>"),
        None => writeln!(out, "  account     {name} (email hidden)"),
    };
    let kind = a.account_type.as_deref().unwrap_or("unknown type");
    let _ = writeln!(out, "  account id  {} ({kind})", a.account_id);
    let zone = a.time_zone.as_deref().unwrap_or("unknown");
    let _ = writeln!(
        out,
        "  time zone   {zone} (JQL dates are read in this zone)"
    );
    let s = &report.server;
    let skew = s
        .skew_secs
        .map_or_else(|| "unknown".to_owned(), |k| format!("{k:+}s"));
    let _ = writeln!(
        out,
        "  server      Jira {} {}, clock skew {skew}",
        s.deployment_type
            .as_deref()
            .unwrap_or("(unknown deployment)"),
        s.version.as_deref().unwrap_or("(unknown version)"),
    );
    let _ = writeln!(out, "streams");
    for name in &report.order {
        let Some(stream) = report.streams.get(*name) else {
            continue;
        };
        let state = match (stream.available, stream.enabled) {
            (true, true) => "ok",
            (true, false) => "disabled",
            (false, _) => "skipped",
        };
        let note = stream
            .reason
            .as_deref()
            .or(stream.detail.as_deref())
            .unwrap_or("");
        let line = format!("  {name:<18} {state:<8} {note}");
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(fix) = &stream.fix {
            let _ = writeln!(out, "  {:<18} {:<8} fix: {fix}", "", "");
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::check::{AccountReport, ServerReport, StreamReport};
    use crate::streams::projects::BROWSE_FIX;

    const STREAMS: [&str; 5] = ["projects", "issues", "users", "audit_records", "org_events"];

    #[test]
    fn the_text_report_puts_each_stream_on_a_line_with_the_fix_below() {
        let stream = |available: bool| match available {
            true => StreamReport::available(true, Some("3 projects visible".to_owned())),
            false => StreamReport::unavailable(false, "no access".to_owned(), BROWSE_FIX),
        };
        let report = CheckReport {
            ok: false,
            site: "acme.atlassian.net".to_owned(),
            base_url: "https://acme.atlassian.net".to_owned(),
            account: AccountReport {
                account_id: "5b10".to_owned(),
                display_name: Some("Ada".to_owned()),
                email: None,
                account_type: Some("atlassian".to_owned()),
                time_zone: Some("Europe/Berlin".to_owned()),
            },
            server: ServerReport {
                version: None,
                deployment_type: Some("Cloud".to_owned()),
                server_time: None,
                skew_secs: Some(-3),
            },
            streams: STREAMS
                .iter()
                .map(|s| (s.to_string(), stream(*s == "projects")))
                .collect(),
            order: STREAMS.to_vec(),
            warnings: vec!["mind the clock".to_owned()],
        };
        let text = render_text(&report);
        assert!(text.starts_with("connected, but the account cannot browse projects: acme"));
        assert!(
            text.contains("  account     Ada (email hidden)\n"),
            "{text}"
        );
        assert!(text.contains("clock skew -3s"), "{text}");
        assert!(
            text.contains("  projects           ok       3 projects visible\n"),
            "{text}"
        );
        assert!(
            text.contains("  users              skipped  no access\n"),
            "{text}"
        );
        assert!(
            text.contains("                              fix: grant the account"),
            "{text}"
        );
        assert!(text.ends_with("warning: mind the clock\n"), "{text}");
        assert!(
            report.headline().contains("streams available: projects"),
            "{}",
            report.headline()
        );
    }
}
