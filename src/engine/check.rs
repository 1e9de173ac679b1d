//! `jira-sync check`: can the daemon reach the site, as whom, and which streams may it sync?
//!
//! The connection is fatal only when it cannot work at all: bad credentials, no Jira at the
//! address, no network, no Browse Projects permission. A stream the account cannot read (users
//! and audit records need admin rights) is reported as skipped with the reason and the fix, and
//! the check still succeeds, because the daemon then syncs everything else.

use crate::jira::model::{MyPermissions, Myself, ServerInfo};
use crate::jira::time::{parse_jira_timestamp, parse_zone};
use crate::jira::{JiraClient, JiraError};
use crate::settings::Settings;
use crate::streams::{Availability, Probe, Registry};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Keyed by stream name.
    pub streams: BTreeMap<String, StreamReport>,
    /// The stream names in the order the registry lists them.
    #[serde(skip)]
    pub order: Vec<&'static str>,
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
        let readable: Vec<&str> = self
            .order
            .iter()
            .copied()
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

impl CheckReport {
    /// An error unless the account can browse projects: without that nothing can sync.
    pub fn require_browse(&self) -> Result<(), JiraError> {
        if self.ok {
            return Ok(());
        }
        Err(JiraError::Forbidden {
            endpoint: "GET /rest/api/3/mypermissions".to_owned(),
            message: format!(
                "the account lacks the BROWSE_PROJECTS permission (Browse Projects) in every \
                 project: {}",
                crate::streams::projects::BROWSE_FIX
            ),
        })
    }
}

impl StreamReport {
    pub fn available(enabled: bool, detail: Option<String>) -> Self {
        StreamReport {
            enabled,
            available: true,
            reason: None,
            fix: None,
            detail,
        }
    }

    pub fn unavailable(enabled: bool, reason: String, fix: &str) -> Self {
        StreamReport {
            enabled,
            available: false,
            reason: Some(reason),
            fix: Some(fix.to_owned()),
            detail: None,
        }
    }
}

/// Runs the check with a client of its own; see [`run_with`].
pub async fn run(settings: &Settings) -> anyhow::Result<CheckReport> {
    let registry = Registry::new(settings)?;
    let client = super::connect::client_for_check(settings).await?;
    Ok(run_with(settings, &client, &registry).await?)
}

/// Asks Jira who we are, what it is, and which streams the account can read (each stream
/// probes for itself).
///
/// `/myself` comes first: with bad credentials it is the one request made, and a 401 is
/// returned at once (never retried).
#[tracing::instrument(skip_all, fields(site = %settings.site()))]
pub async fn run_with(
    settings: &Settings,
    client: &JiraClient,
    registry: &Registry,
) -> Result<CheckReport, JiraError> {
    let me: Myself = match client.get(&client.rest("myself"), &[]).await {
        Ok(me) => me,
        // A classic-token 401 may be a scoped token used at the site's address.
        Err(err @ JiraError::Unauthorized { .. }) => {
            return Err(
                crate::jira::auth::explain_401(&settings.jira, &settings.rate_limit, err).await,
            );
        }
        Err(err) => return Err(site_error(client, err)),
    };
    let server: ServerInfo = client
        .get(&client.rest("serverInfo"), &[])
        .await
        .map_err(|e| site_error(client, e))?;
    let permissions = permissions(client).await?;
    let can_browse = permissions.has("BROWSE_PROJECTS");
    let probe = Probe::new(client, can_browse);
    let mut streams = BTreeMap::new();
    let mut order = Vec::new();
    for stream in registry.iter() {
        let Some(availability) = stream.probe(&probe).await else {
            continue;
        };
        let enabled = stream.schedule().enabled;
        let report = match availability? {
            Availability::Readable { detail } => StreamReport::available(enabled, detail),
            Availability::Unreadable { reason, fix } => {
                StreamReport::unavailable(enabled, reason, &fix)
            }
            Availability::NotConfigured { reason } => StreamReport {
                enabled: false,
                available: false,
                reason: Some(reason),
                fix: None,
                detail: None,
            },
        };
        streams.insert(stream.name().to_owned(), report);
        order.push(stream.name());
    }
    let mut warnings = probe.into_warnings();
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
        order,
        warnings,
    })
}

/// `/mypermissions` for the keys the streams need. `USER_PICKER` is the documented key of
/// "Browse users and groups"; should a site reject it as unknown (400), ask again without it.
async fn permissions(client: &JiraClient) -> Result<MyPermissions, JiraError> {
    let path = &client.rest("mypermissions");
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
