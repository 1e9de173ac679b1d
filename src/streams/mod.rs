//! Streams: one file per Jira entity. A stream knows its endpoint, its paging style, how to turn
//! a record into a row and what its checkpoint is; it writes only through [`Store`].

pub mod audit;
pub mod census;
pub mod dc_search;
pub mod issues;
pub mod org_events;
pub mod parse;
pub mod projects;
pub mod ranges;
pub mod users;

use crate::config::SyncSettings;
use crate::jira::JiraClient;
use crate::store::Store;
use crate::sync::progress::Progress;
use chrono_tz::Tz;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The entities jira-sync copies. Adding one shows up as compile errors wherever it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    Projects,
    Issues,
    Users,
    AuditRecords,
    /// The organization's audit events (Admin API); runs only where an organization API key
    /// is configured, so it is not in [`StreamKind::ALL`].
    OrgEvents,
    /// The delete census of issues; runs after the issues stream when it is due.
    Census,
}

impl StreamKind {
    /// The site's data streams, in the order a sync runs them (the census is scheduled on its
    /// own; [`StreamKind::OrgEvents`] is added where configured).
    pub const ALL: [StreamKind; 4] = [
        StreamKind::Projects,
        StreamKind::Issues,
        StreamKind::Users,
        StreamKind::AuditRecords,
    ];

    /// The name used in `jira.sync_state`, `jira.sync_runs`, logs and `--stream`.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Projects => "projects",
            StreamKind::Issues => "issues",
            StreamKind::Users => "users",
            StreamKind::AuditRecords => "audit_records",
            StreamKind::OrgEvents => "org_events",
            StreamKind::Census => "census",
        }
    }

    /// Parses a `--stream` name; `audit` is accepted for `audit_records`.
    pub fn parse(name: &str) -> Option<StreamKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "projects" => Some(StreamKind::Projects),
            "issues" => Some(StreamKind::Issues),
            "users" => Some(StreamKind::Users),
            "audit" | "audit_records" => Some(StreamKind::AuditRecords),
            "org_events" => Some(StreamKind::OrgEvents),
            "census" => Some(StreamKind::Census),
            _ => None,
        }
    }

    pub fn enabled_in(self, sync: &SyncSettings) -> bool {
        match self {
            StreamKind::Projects => sync.projects,
            StreamKind::Issues => sync.issues,
            StreamKind::Users => sync.users,
            StreamKind::AuditRecords => sync.audit_records,
            // Resolved at load: false unless an org id and an org API key are configured.
            StreamKind::OrgEvents => sync.org_events,
            StreamKind::Census => sync.issues,
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Full: read everything. Incremental: read what changed since the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Incremental,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

/// What every stream needs to run.
pub struct StreamContext {
    pub client: JiraClient,
    pub store: Store,
    /// The first key column of every table.
    pub site: String,
    /// The API user's profile zone: JQL date literals are read in it.
    pub user_zone: Tz,
    pub sync: SyncSettings,
    pub max_in_flight: usize,
    /// The organization of the `org_events` stream, when configured.
    pub org: Option<org_events::OrgSource>,
}

/// Counts kept while a stream runs (shared by its parallel tasks).
#[derive(Debug, Default)]
pub struct RunCounters {
    pub requests: AtomicU64,
    pub rows_seen: AtomicU64,
    pub rows_written: AtomicU64,
}

impl RunCounters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn page(&self, seen: usize, written: u64, progress: &Progress) {
        self.rows_seen.fetch_add(seen as u64, Ordering::Relaxed);
        self.rows_written.fetch_add(written, Ordering::Relaxed);
        progress.advance(seen as u64);
    }

    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.rows_seen.load(Ordering::Relaxed),
            self.rows_written.load(Ordering::Relaxed),
        )
    }
}

/// How a stream run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    Done,
    /// The account may not read this stream (e.g. users and audit need Jira admin rights).
    Skipped(String),
}

/// Whether a project key passes the `[sync]` include/exclude lists.
pub fn project_selected(sync: &SyncSettings, key: &str) -> bool {
    let listed = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(key));
    (sync.include_projects.is_empty() || listed(&sync.include_projects))
        && !listed(&sync.exclude_projects)
}

/// A stream's checkpoint document, read and checked. A document of another version, or one
/// this version cannot read, fails with the command that rebuilds it rather than guessing.
pub(crate) async fn load_versioned_checkpoint<T: serde::de::DeserializeOwned>(
    ctx: &StreamContext,
    stream: &str,
    version: u32,
) -> anyhow::Result<Option<T>> {
    let Some(value) = ctx.store.load_checkpoint(&ctx.site, stream).await? else {
        return Ok(None);
    };
    let rebuild = format!("run `jira-sync sync --once --full --stream {stream}` to rebuild it");
    let found = value.get("version").and_then(serde_json::Value::as_u64);
    if found != Some(u64::from(version)) {
        let found = found.map_or_else(|| "none".to_string(), |v| v.to_string());
        anyhow::bail!(
            "the {stream} checkpoint in jira.sync_state has version {found} but this jira-sync \
             reads version {version}; {rebuild}"
        );
    }
    serde_json::from_value(value).map(Some).map_err(|err| {
        anyhow::anyhow!(
            "the {stream} checkpoint in jira.sync_state is unreadable ({err}); {rebuild}"
        )
    })
}
