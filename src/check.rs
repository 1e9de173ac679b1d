//! `jira-sync check`: can the daemon reach the site, as whom, and which streams may it sync?
//!
//! The connection is fatal only when it cannot work at all: bad credentials, no Jira at the
//! address, no network, no Browse Projects permission. A stream the account cannot read (users
//! and audit records need admin rights) is reported as skipped with the reason and the fix, and
//! the check still succeeds, because the daemon then syncs everything else.

use crate::config::{Settings, SyncSettings};
use crate::jira::model::{MyPermissions, Myself, ServerInfo};
use crate::jira::time::{parse_jira_timestamp, parse_zone};
use crate::jira::{JiraClient, JiraError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `jira-sync check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The streams, in the order the report lists them.
pub const STREAMS: [&str; 5] = ["projects", "issues", "users", "audit_records", "org_events"];

/// What `check` learned about the site.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Connected, and the account can browse projects.
    pub ok: bool,
    /// The site id rows are stored under.
    pub site: String,
    pub base_url: String,
    pub account: AccountReport,
    pub server: ServerReport,
    /// Keyed by stream name (see [`STREAMS`]).
    pub streams: BTreeMap<String, StreamReport>,
    /// Things that work but deserve attention (clock skew, unknown time zone, not Cloud).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub account_id: String,
    pub display_name: Option<String>,
    /// Present when the account's profile lets the API show it.
    pub email: Option<String>,
    pub account_type: Option<String>,
    /// The zone JQL date literals are read in.
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub version: Option<String>,
    pub deployment_type: Option<String>,
    pub server_time: Option<DateTime<Utc>>,
    /// Jira's clock minus ours, in seconds.
    pub skew_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Whether the configuration asks for this stream (`sync.<stream>`).
    pub enabled: bool,
    /// Whether the account can read it.
    pub available: bool,
    /// Why it is unavailable.
    pub reason: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// A note when available, e.g. how many projects are visible.
    pub detail: Option<String>,
}

impl CheckReport {
    /// One line for logs and other commands: who, where, and which streams will sync.
    pub fn headline(&self) -> String {
        let who = self
            .account
            .display_name
            .as_deref()
            .unwrap_or(&self.account.account_id);
        let readable: Vec<&str> = STREAMS
            .into_iter()
            .filter(|s| self.streams.get(*s).is_some_and(|r| r.available))
            .collect();
        let readable = if readable.is_empty() {
            "none".to_owned()
        } else {
            readable.join(", ")
        };
        format!("{who} on {} (streams available: {readable})", self.site)
    }
}

impl StreamReport {
    fn available(enabled: bool, detail: Option<String>) -> Self {
        StreamReport {
            enabled,
            available: true,
            reason: None,
            fix: None,
            detail,
        }
    }

    fn unavailable(enabled: bool, reason: String, fix: &str) -> Self {
        StreamReport {
            enabled,
            available: false,
            reason: Some(reason),
            fix: Some(fix.to_owned()),
            detail: None,
        }
    }
}

const BROWSE_FIX: &str = "grant the account Browse Projects in the projects' permission schemes (e.g. through a project role or group)";
const USERS_FIX: &str = "grant the account the global permission Browse users and groups (USER_PICKER), or set sync.users = false";
const AUDIT_FIX: &str = "add the account to a group with the global permission Administer Jira (ADMINISTER), or set sync.audit_records = false";

/// `jira-sync check`: prints the report and exits 0 when the daemon can sync.
pub async fn command(settings: &Settings, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut client = None;
    let report = match connect(settings).await {
        Ok(connected) => run_with(settings, client.insert(connected)).await,
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
                    "exit_code": err.exit_code(),
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
    if !report.ok {
        return Err(JiraError::Forbidden {
            endpoint: "GET /rest/api/3/mypermissions".to_owned(),
            message: "the account lacks the BROWSE_PROJECTS permission (Browse Projects) in every project: ".to_owned() + BROWSE_FIX,
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the check with a client of its own; see [`run_with`].
pub async fn run(settings: &Settings) -> Result<CheckReport, JiraError> {
    let client = connect(settings).await?;
    run_with(settings, &client).await
}

/// The client of the configured auth mode (see [`crate::jira::auth`]).
async fn connect(settings: &Settings) -> Result<JiraClient, JiraError> {
    let store = crate::jira::auth::store_for(settings).await?;
    crate::jira::auth::connect(settings, store.as_ref()).await
}

/// Asks Jira who we are, what it is, and which streams the account can read.
///
/// `/myself` comes first: with bad credentials it is the one request made, and a 401 is
/// returned at once (never retried).
#[tracing::instrument(skip_all, fields(site = %settings.site()))]
pub async fn run_with(settings: &Settings, client: &JiraClient) -> Result<CheckReport, JiraError> {
    let me: Myself = match client.get("/rest/api/3/myself", &[]).await {
        Ok(me) => me,
        // A classic-token 401 may be a scoped token used at the site's address.
        Err(err @ JiraError::Unauthorized { .. }) => {
            return Err(crate::jira::auth::explain_401(settings, err).await);
        }
        Err(err) => return Err(site_error(client, err)),
    };
    let server: ServerInfo = client
        .get("/rest/api/3/serverInfo", &[])
        .await
        .map_err(|e| site_error(client, e))?;
    let permissions = permissions(client).await?;
    let can_browse = permissions.has("BROWSE_PROJECTS");
    let (mut streams, mut warnings) = stream_reports(client, &settings.sync, can_browse).await?;
    streams.insert("org_events".to_owned(), org_report(settings).await);
    let server_time = server.server_time.as_deref().and_then(parse_jira_timestamp);
    let skew_secs = server_time.map(|t| (t - Utc::now()).num_seconds());
    warnings.extend(server_warnings(&me, &server, skew_secs));
    Ok(CheckReport {
        ok: can_browse,
        site: settings.site(),
        base_url: base_url_text(client),
        account: AccountReport {
            account_id: me.account_id,
            display_name: me.display_name,
            email: me.email_address.filter(|e| !e.is_empty()),
            account_type: me.account_type,
            time_zone: me.time_zone,
        },
        server: ServerReport {
            version: server.version,
            deployment_type: server.deployment_type,
            server_time,
            skew_secs,
        },
        streams,
        warnings,
    })
}

/// Which streams the account can read, each found out with one cheap request, plus warnings.
async fn stream_reports(
    client: &JiraClient,
    sync: &SyncSettings,
    can_browse: bool,
) -> Result<(BTreeMap<String, StreamReport>, Vec<String>), JiraError> {
    let one = |key: &'static str| [(key, "1".to_owned())];
    let dc = client.is_data_center();
    let mut warnings = Vec::new();
    let (projects, issues) = if !can_browse {
        let reason = "the account lacks Browse Projects (BROWSE_PROJECTS) in every project";
        (
            StreamReport::unavailable(sync.projects, reason.to_owned(), BROWSE_FIX),
            StreamReport::unavailable(sync.issues, reason.to_owned(), BROWSE_FIX),
        )
    } else {
        // Data Center lists projects in one array at `/project`; Cloud pages `/project/search`.
        let listing = match dc {
            true => probe(client, "/rest/api/2/project", &[]).await?,
            false => probe(client, "/rest/api/3/project/search", &one("maxResults")).await?,
        };
        match listing {
            Ok(page) => {
                let total = match page.as_array() {
                    Some(projects) => Some(projects.len() as u64),
                    None => page.get("total").and_then(serde_json::Value::as_u64),
                };
                if total == Some(0) {
                    warnings.push(
                        "no project is visible to this account: there will be no issues to sync"
                            .to_owned(),
                    );
                }
                let detail = total.map(|n| format!("{n} projects visible"));
                (
                    StreamReport::available(sync.projects, detail),
                    StreamReport::available(sync.issues, None),
                )
            }
            Err(reason) => (
                StreamReport::unavailable(sync.projects, reason.clone(), BROWSE_FIX),
                StreamReport::unavailable(sync.issues, reason, BROWSE_FIX),
            ),
        }
    };
    let users = match dc {
        true => {
            let query = [("username", ".".to_owned()), ("maxResults", "1".to_owned())];
            probe(client, "/rest/api/2/user/search", &query).await?
        }
        false => probe(client, "/rest/api/3/users/search", &one("maxResults")).await?,
    };
    let users = match users {
        // Data Center lists nobody, rather than answering 403, to an account that may not
        // browse users (the site has at least the API user).
        Ok(body) if dc && body.as_array().is_some_and(Vec::is_empty) => StreamReport::unavailable(
            sync.users,
            "GET /rest/api/2/user/search?username=. listed no user".to_owned(),
            USERS_FIX,
        ),
        Ok(_) => StreamReport::available(sync.users, None),
        Err(reason) => StreamReport::unavailable(sync.users, reason, USERS_FIX),
    };
    let audit = match probe(client, "/rest/api/3/auditing/record", &one("limit")).await? {
        Ok(_) => StreamReport::available(sync.audit_records, None),
        Err(reason) => StreamReport::unavailable(sync.audit_records, reason, AUDIT_FIX),
    };
    let streams = [
        ("projects", projects),
        ("issues", issues),
        ("users", users),
        ("audit_records", audit),
    ]
    .into_iter()
    .map(|(name, report)| (name.to_owned(), report))
    .collect();
    Ok((streams, warnings))
}

/// The organization stream, probed through the Admin API with the organization API key. Its
/// problems are reported, never fatal: the site's streams sync regardless.
async fn org_report(settings: &Settings) -> StreamReport {
    use crate::streams::org_events::{self, Probe};
    let enabled = settings.sync.org_events;
    match org_events::probe(settings).await {
        Probe::NotConfigured => StreamReport {
            enabled: false,
            available: false,
            reason: Some(org_events::NOT_CONFIGURED.to_owned()),
            fix: None,
            detail: None,
        },
        Probe::Readable => {
            let org = settings.jira.org_id.as_deref().unwrap_or_default();
            let detail = format!("organization {org}: key valid, events readable");
            StreamReport::available(enabled, Some(detail))
        }
        Probe::Unreadable { reason, fix } => StreamReport::unavailable(enabled, reason, &fix),
    }
}

/// `/mypermissions` for the keys the streams need. `USER_PICKER` is the documented key of
/// "Browse users and groups"; should a site reject it as unknown (400), ask again without it.
async fn permissions(client: &JiraClient) -> Result<MyPermissions, JiraError> {
    let path = "/rest/api/3/mypermissions";
    let all = [(
        "permissions",
        "BROWSE_PROJECTS,ADMINISTER,USER_PICKER".to_owned(),
    )];
    match client.get(path, &all).await {
        Err(JiraError::BadRequest { .. }) => {
            let fewer = [("permissions", "BROWSE_PROJECTS,ADMINISTER".to_owned())];
            client
                .get(path, &fewer)
                .await
                .map_err(|e| site_error(client, e))
        }
        other => other.map_err(|e| site_error(client, e)),
    }
}

/// One cheap request to a stream's endpoint. `Ok(Err(reason))` means the stream is not
/// readable; errors that end the whole check (credentials, network, rate limit) are returned.
async fn probe(
    client: &JiraClient,
    path: &str,
    query: &[(&str, String)],
) -> Result<Result<serde_json::Value, String>, JiraError> {
    match client.get::<serde_json::Value>(path, query).await {
        Ok(body) => Ok(Ok(body)),
        Err(
            e @ (JiraError::Unauthorized { .. }
            | JiraError::Auth { .. }
            | JiraError::RateLimited { .. }
            | JiraError::Connect { .. }
            | JiraError::Timeout { .. }
            | JiraError::Network { .. }
            | JiraError::Setup { .. }),
        ) => Err(e),
        Err(JiraError::Forbidden { endpoint, message }) if message.is_empty() => {
            Ok(Err(format!("{endpoint} answered 403 (permission denied)")))
        }
        Err(JiraError::Forbidden { endpoint, message }) => Ok(Err(format!(
            "{endpoint} answered 403 (permission denied): {message}"
        ))),
        Err(other) => Ok(Err(other.to_string())),
    }
}

/// Reads a 404/410 or an unexpected JSON shape from the identity endpoints as "this is not a
/// Jira Cloud site", and a 403 there as "this account may not use Jira".
fn site_error(client: &JiraClient, err: JiraError) -> JiraError {
    let not_jira = |detail: String| JiraError::NotJira {
        base_url: base_url_text(client),
        detail,
    };
    match err {
        JiraError::NotFound { endpoint } => not_jira(format!("{endpoint} answered 404")),
        JiraError::Gone { endpoint, .. } => not_jira(format!("{endpoint} answered 410")),
        JiraError::Decode { endpoint, .. } => {
            not_jira(format!("{endpoint} answered JSON that is not Jira's"))
        }
        JiraError::Forbidden { endpoint, message } => JiraError::Forbidden {
            endpoint,
            message: format!(
                "{message} (the account may lack access to Jira: give it a Jira product license)"
            )
            .trim_start()
            .to_owned(),
        },
        other => other,
    }
}

fn server_warnings(me: &Myself, server: &ServerInfo, skew_secs: Option<i64>) -> Vec<String> {
    let mut warnings = Vec::new();
    match me.time_zone.as_deref() {
        None => warnings.push("jira reported no time zone for the account: JQL dates would be read in an unknown zone; set one in the account's profile".to_owned()),
        Some(zone) if parse_zone(zone).is_none() => warnings.push(format!("the account's time zone {zone:?} is not a known IANA zone: JQL dates may be misread")),
        Some(_) => {}
    }
    if let Some(kind) = server
        .deployment_type
        .as_deref()
        .filter(|k| !k.eq_ignore_ascii_case("cloud"))
    {
        warnings.push(format!(
            "the site reports deployment type {kind:?}: jira-sync is built for Jira Cloud"
        ));
    }
    if let Some(skew) = skew_secs.filter(|s| s.abs() > 60) {
        warnings.push(format!("this machine's clock differs from Jira's by {skew}s: keep it in sync (NTP) so logs and sync windows line up"));
    }
    warnings
}

fn base_url_text(client: &JiraClient) -> String {
    client.base_url().as_str().trim_end_matches('/').to_owned()
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
    for name in STREAMS {
        let Some(stream) = report.streams.get(name) else {
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
        let line = format!("  {name:<14} {state:<8} {note}");
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(fix) = &stream.fix {
            let _ = writeln!(out, "  {:<14} {:<8} fix: {fix}", "", "");
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
            text.contains("  projects       ok       3 projects visible\n"),
            "{text}"
        );
        assert!(
            text.contains("  users          skipped  no access\n"),
            "{text}"
        );
        assert!(
            text.contains("                          fix: grant the account"),
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
