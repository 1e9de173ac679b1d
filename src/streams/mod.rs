//! Streams: one component per Jira entity. A stream knows its endpoints, its paging, how a
//! record becomes a row of its table, its typed checkpoint, when it runs, what `status` shows
//! of it and how `check` finds out whether the account may read it. It does no SQL and sends
//! no request but through the client; the engine runs it, the daemon schedules it.
//!
//! Adding a stream: a module implementing [`Stream`], its migration, and a line in
//! [`components`] (see `ARCHITECTURE.md`, "How to add a stream"). Records that belong to an
//! issue (comments, worklogs, changelogs, links) are an [`IssueChild`] instead, listed in
//! [`issue_children`]: they ride on the issues stream's pages and commit with them.

pub mod audit;
pub mod census;
pub mod checkpoint;
pub mod children;
pub mod issues;
pub mod org_events;
pub mod parse;
pub mod projects;
pub mod ranges;
pub mod reference;
pub mod users;

use crate::jira::model::Myself;
use crate::jira::time::parse_zone;
use crate::jira::{Flavor, JiraClient, JiraError};
use crate::settings::{ConfigError, Settings};
use crate::store::children::ChildTable;
use crate::store::status::Count;
use crate::store::{PageWrite, Store, Written};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use checkpoint::Checkpoint;

/// Every stream, in the order reports list them and `sync --once` runs them.
fn components(
    settings: &Settings,
    children: Vec<Arc<dyn IssueChild>>,
) -> Result<Vec<Arc<dyn Stream>>, ConfigError> {
    let child_tables: Vec<&'static ChildTable> =
        children.iter().flat_map(|c| c.tables().iter()).collect();
    let mut streams: Vec<Arc<dyn Stream>> = vec![
        Arc::new(projects::Projects::new(settings)),
        Arc::new(issues::Issues::new(settings, children)),
        Arc::new(users::Users::new(settings)),
        Arc::new(audit::Audit::new(settings)),
        Arc::new(org_events::OrgEvents::new(settings)?),
        Arc::new(census::Census::new(settings, child_tables)),
    ];
    for kind in &reference::KINDS {
        streams.push(Arc::new(reference::Reference::new(settings, kind)?));
    }
    Ok(streams)
}

/// Every kind of record that rides on the issues stream's pages, as `[sync]` enables them.
pub fn issue_children(settings: &Settings) -> Result<Vec<Arc<dyn IssueChild>>, ConfigError> {
    Ok(children::enabled(settings))
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

/// How a stream run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    Done,
    /// The account may not read this stream (e.g. users and audit need Jira admin rights).
    Skipped(String),
}

/// When a stream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Whether `[sync]` enables it (and what it needs is configured).
    pub enabled: bool,
    /// How long after a run the daemon runs it again.
    pub interval: Duration,
    /// A follow-up of this stream: it runs only once that one has succeeded, never at the
    /// same time (the census follows the issues stream), and only when [`Stream::due`].
    pub follows: Option<&'static str>,
}

impl Schedule {
    /// Enabled or not, every `secs` seconds (at least one).
    pub fn every(enabled: bool, secs: u64) -> Schedule {
        Schedule {
            enabled,
            interval: Duration::from_secs(secs.max(1)),
            follows: None,
        }
    }
}

/// What a run reports as it goes; the engine's caller decides what to show of it (bars, log
/// lines, nothing) and what else to note (the daemon's stall check).
pub trait Progress: Send + Sync {
    /// More work is known: `n` more items to do.
    fn add_total(&self, n: u64);
    /// `n` items are done.
    fn advance(&self, n: u64);
    /// The run ended (the engine says so; streams never call it).
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Which projects `[sync]` selects.
#[derive(Debug, Clone, Default)]
pub struct ProjectFilter {
    /// Upper-case keys; empty means every project.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl ProjectFilter {
    pub fn from_settings(settings: &Settings) -> ProjectFilter {
        ProjectFilter {
            include: settings.sync.include_projects.clone(),
            exclude: settings.sync.exclude_projects.clone(),
        }
    }

    /// Whether a project key passes the include and exclude lists.
    pub fn selects(&self, key: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(key));
        (self.include.is_empty() || listed(&self.include)) && !listed(&self.exclude)
    }
}

/// What every stream of a site runs with.
pub struct StreamContext {
    pub client: JiraClient,
    pub store: Store,
    /// The first key column of every table.
    pub site: String,
    pub projects: ProjectFilter,
    /// `rate_limit.max_in_flight`: how many requests (and pages) a stream keeps going at once.
    pub max_in_flight: usize,
}

impl StreamContext {
    /// Cloud or Data Center, as found at connect.
    pub fn flavor(&self) -> Flavor {
        self.client.flavor()
    }

    /// The API user's profile time zone, read from `/myself` now: JQL date literals are read
    /// in it, and it may change while a daemon runs, so a stream that writes them asks at the
    /// start of each run. A zone jira-sync does not know is an error naming it: literals
    /// written in a guessed zone would skip or re-read hours of changes.
    pub async fn user_zone(&self) -> anyhow::Result<Tz> {
        let me: Myself = self
            .client
            .get(&self.client.rest("myself"), &[])
            .await
            .context("cannot read the API user's time zone (/myself)")?;
        let Some(name) = me.time_zone.filter(|z| !z.trim().is_empty()) else {
            anyhow::bail!(
                "Jira reports no time zone for the API user ({}): JQL dates are read in it; \
                 set one in the account's profile",
                me.account_id
            );
        };
        parse_zone(&name).ok_or_else(|| {
            anyhow::anyhow!(
                "the API user's time zone {name:?} (from /myself) is not a zone jira-sync knows: \
                 JQL dates cannot be written in it; set an IANA zone such as Europe/Berlin in \
                 the account's profile"
            )
        })
    }
}

/// Counts kept while a stream runs (shared by its parallel tasks).
#[derive(Debug, Default)]
pub struct RunCounters {
    pub requests: AtomicU64,
    pub rows_seen: AtomicU64,
    pub rows_written: AtomicU64,
    /// The records filed in `jira.quarantine`, by id: a record set aside twice in one run
    /// (retried from quarantine, then read again by the scan) counts once.
    set_aside: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Rows of other tables the run wrote with its own (the records of issues): per table, the
    /// rows read and the rows that changed.
    tables: std::sync::Mutex<std::collections::BTreeMap<&'static str, (u64, u64)>>,
}

/// What a run counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted {
    pub requests: u64,
    pub rows_seen: u64,
    pub rows_written: u64,
    pub set_aside: u64,
    /// Rows of other tables written with the stream's own: (table, read, changed).
    pub tables: Vec<(&'static str, u64, u64)>,
}

impl RunCounters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A page of `seen` records was written (`written` says what it did). Its first batch is
    /// the stream's own table; the others are counted apart, per table.
    pub fn page(&self, seen: usize, mut written: Written, progress: &dyn Progress) {
        self.rows_seen.fetch_add(seen as u64, Ordering::Relaxed);
        let own = match written.tables.is_empty() {
            true => written.rows,
            false => written.tables.remove(0).2,
        };
        self.rows_written.fetch_add(own, Ordering::Relaxed);
        self.tally(written, progress, seen as u64);
    }

    /// Rows of other tables than the stream's own were written (records of issues read after
    /// the scans), and the records set aside with them.
    pub fn tally(&self, written: Written, progress: &dyn Progress, done: u64) {
        if !written.tables.is_empty() {
            let mut tables = self
                .tables
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (table, read, changed) in written.tables {
                let entry = tables.entry(table).or_default();
                entry.0 += read;
                entry.1 += changed;
            }
        }
        if !written.set_aside.is_empty() {
            self.set_aside
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(written.set_aside);
        }
        progress.advance(done);
    }

    pub fn get(&self) -> Counted {
        Counted {
            requests: self.requests.load(Ordering::Relaxed),
            rows_seen: self.rows_seen.load(Ordering::Relaxed),
            rows_written: self.rows_written.load(Ordering::Relaxed),
            set_aside: self
                .set_aside
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len() as u64,
            tables: self
                .tables
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(table, (read, changed))| (*table, *read, *changed))
                .collect(),
        }
    }
}

/// One run of a stream.
pub struct Run<'a> {
    pub mode: Mode,
    pub counters: &'a RunCounters,
    pub progress: &'a dyn Progress,
}

/// The stream's cursor as `jira-sync status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor {
    /// Everything before this instant is in the database.
    pub at: Option<DateTime<Utc>>,
    /// What the cursor is, in words.
    pub note: Option<String>,
}

impl Cursor {
    pub fn new(at: Option<DateTime<Utc>>, note: impl Into<String>) -> Cursor {
        Cursor {
            at,
            note: Some(note.into()),
        }
    }

    /// A full-refresh stream's: no cursor.
    pub fn full_refresh() -> Cursor {
        Cursor::new(None, "none: refreshed in full each run")
    }

    /// A stream with a cursor that has not run yet.
    pub fn not_yet() -> Cursor {
        Cursor::new(None, "none yet: the first run starts from the beginning")
    }

    pub fn unreadable() -> Cursor {
        Cursor::new(None, "the checkpoint is unreadable")
    }
}

/// Whether the account may read a stream, as `jira-sync check` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// It can sync; `detail` is a note such as how many projects are visible.
    Readable { detail: Option<String> },
    /// The account may not read it: why, and what to do.
    Unreadable { reason: String, fix: String },
    /// What the stream needs is not configured (it then never runs).
    NotConfigured { reason: String },
}

/// What the probes of one `check` share: the client, the permissions found, and answers more
/// than one probe needs (asked once).
pub struct Probe<'a> {
    pub client: &'a JiraClient,
    /// The account holds Browse Projects in some project.
    pub can_browse: bool,
    /// The projects stream's listing probe, shared with the issues stream's.
    pub(super) listing: tokio::sync::OnceCell<Result<Value, Refusal>>,
    warnings: std::sync::Mutex<Vec<String>>,
}

impl<'a> Probe<'a> {
    pub fn new(client: &'a JiraClient, can_browse: bool) -> Probe<'a> {
        Probe {
            client,
            can_browse,
            listing: tokio::sync::OnceCell::new(),
            warnings: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Something that works but deserves the user's attention.
    pub fn warn(&self, warning: String) {
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.push(warning);
        }
    }

    pub fn into_warnings(self) -> Vec<String> {
        self.warnings.into_inner().unwrap_or_default()
    }

    /// One cheap request: `Ok(Ok(body))` when it is answered, `Ok(Err(refusal))` when the
    /// account may not read it, `Err` for what ends the whole check (credentials, network,
    /// rate limit).
    pub async fn request(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Result<Value, Refusal>, JiraError> {
        let refused = |reason: String| Ok(Err(Refusal::new(reason)));
        match self.client.get::<Value>(path, query).await {
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
            Err(JiraError::Scope { endpoint }) => Ok(Err(Refusal {
                reason: format!(
                    "{endpoint} answered 401 although the credentials work: the token lacks \
                     this endpoint's scope"
                ),
                fix: Some(SCOPE_FIX.to_owned()),
            })),
            Err(JiraError::Forbidden { endpoint, message }) if message.is_empty() => {
                refused(format!("{endpoint} answered 403 (permission denied)"))
            }
            Err(JiraError::Forbidden { endpoint, message }) => refused(format!(
                "{endpoint} answered 403 (permission denied): {message}"
            )),
            Err(other) => refused(other.to_string()),
        }
    }
}

/// What to do about a token that lacks an endpoint's scope.
pub const SCOPE_FIX: &str = "add the scope to the scoped API token (id.atlassian.com) or to the \
     OAuth app (developer console; read:jira-work, read:jira-user, manage:jira-configuration), \
     or disable the stream in [sync]";

/// Why a probe found a stream unreadable, and the fix when the refusal itself names one (a
/// missing scope); otherwise the stream's own fix applies.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: String,
    pub fix: Option<String>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            fix: None,
        }
    }

    /// The stream is unreadable for this refusal; `fix` unless the refusal names its own.
    pub fn unreadable(self, fix: &str) -> Availability {
        Availability::Unreadable {
            reason: self.reason,
            fix: self.fix.unwrap_or_else(|| fix.to_owned()),
        }
    }
}

/// A stream: one kind of Jira record, copied into its table.
#[async_trait::async_trait]
pub trait Stream: Send + Sync {
    /// The name in `jira.sync_state`, `jira.sync_runs`, logs, metrics and `--stream`.
    fn name(&self) -> &'static str;

    /// Other names `--stream` accepts.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether and how often it runs.
    fn schedule(&self) -> Schedule;

    /// Why it cannot run even when named explicitly (`--stream`): what it needs is not
    /// configured.
    fn configured(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The mode of the next run: full when asked, or when there is no checkpoint to go on
    /// from. Streams without a cursor always run in full.
    async fn mode(&self, _ctx: &StreamContext, _force_full: bool) -> anyhow::Result<Mode> {
        Ok(Mode::Full)
    }

    /// Whether a follow-up stream ([`Schedule::follows`]) is due now.
    async fn due(&self, _ctx: &StreamContext) -> anyhow::Result<bool> {
        Ok(true)
    }

    /// One run: read from Jira, write through the store, page by page with the checkpoint.
    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus>;

    /// The cursor its checkpoint document stands for.
    fn cursor(&self, _checkpoint: Option<&Value>) -> Cursor {
        Cursor::full_refresh()
    }

    /// Which rows `status` counts as the stream's, for `site`.
    fn rows(&self, site: &str) -> Option<Count>;

    /// Whether the account may read it, found out with as few requests as possible; `None`
    /// when `check` does not list it.
    async fn probe(&self, _probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        None
    }

    /// Clients of its own besides the site's (the Admin API's), for the request metrics.
    fn clients(&self) -> Vec<JiraClient> {
        Vec::new()
    }
}

/// Records that belong to issues (change histories, comments, worklogs, links) and ride on the
/// issues stream: given a page of issues as Jira sent them, a child adds the rows the page
/// embeds to the page's write, with the marks of the issues whose lists it read whole
/// ([`crate::store::children`]), and they commit in the page's transaction with the issues and
/// the cursor. After the scans, in the same run, [`IssueChild::catch_up`] reads what the pages
/// did not hold (truncated lists, histories, feeds) for the issues still behind.
#[async_trait::async_trait]
pub trait IssueChild: Send + Sync {
    fn name(&self) -> &'static str;

    /// The tables it writes, with the columns of each that name an issue.
    fn tables(&self) -> &'static [ChildTable] {
        &[]
    }

    /// The issue fields its records come embedded in (`comment`), if any. Issue pages decode
    /// them (and the typed columns' fields, nothing else) for [`IssueChild::collect`]; an issue
    /// never read with them (one synced before this child existed) is fetched again with these
    /// fields.
    fn embedded_in(&self) -> &'static [&'static str] {
        &[]
    }

    /// Why the site cannot serve it, if it cannot (an endpoint Data Center lacks).
    fn unavailable(&self, _flavor: Flavor) -> Option<&'static str> {
        None
    }

    /// Adds the rows of `issues` (one page, as Jira sent it) to `page`.
    async fn collect(
        &self,
        ctx: &StreamContext,
        counters: &RunCounters,
        issues: &[Value],
        page: &mut PageWrite,
    ) -> anyhow::Result<()>;

    /// Brings the issues whose records are behind up to date, after the scans of `run`.
    async fn catch_up(&self, _ctx: &StreamContext, _run: &ChildRun<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a child's catch-up knows of the issues run it follows.
pub struct ChildRun<'a> {
    pub run: &'a Run<'a>,
    /// When the issues run started, on Jira's clock.
    pub started: DateTime<Utc>,
}

/// Retries the records of `stream` in quarantine by reading the text they were stored with
/// again (a newer jira-sync may read what an older one could not). Those read now are written
/// to their table and leave quarantine in the same transaction; the others stay, with one
/// more attempt counted. For streams that cannot ask Jira for one record again (audit records,
/// organization events); the others fetch theirs anew.
pub async fn retry_quarantined<R: crate::store::Row>(
    ctx: &StreamContext,
    run: &Run<'_>,
    stream: &'static str,
    owner: &str,
    mut parse: impl FnMut(serde_json::Value) -> Result<R, parse::ParseError>,
) -> anyhow::Result<()> {
    let held = ctx.store.quarantined(&ctx.site, stream).await?;
    if held.is_empty() {
        return Ok(());
    }
    let records = held
        .iter()
        .filter_map(|q| serde_json::value::RawValue::from_string(q.raw_text.clone()).ok())
        .collect();
    let read = parse::read_records(stream, "record held in quarantine", records, &mut parse);
    let seen = read.rows.len() + read.set_aside.len();
    let mut page = PageWrite::new(
        stream,
        crate::store::Batch::of(owner, read.rows),
        crate::store::CheckpointWrite::None,
    );
    page.set_aside = read.set_aside;
    page.resolves = true;
    let written = ctx.store.write_page(&ctx.site, page).await?;
    run.counters.page(seen, written, run.progress);
    Ok(())
}

/// The streams of a site, built from the settings.
#[derive(Clone)]
pub struct Registry {
    streams: Vec<Arc<dyn Stream>>,
}

impl Registry {
    /// Every stream, configured by `settings`.
    pub fn new(settings: &Settings) -> Result<Registry, ConfigError> {
        Registry::with_children(settings, issue_children(settings)?)
    }

    /// Every stream, with `children` riding on the issues stream's pages.
    pub fn with_children(
        settings: &Settings,
        children: Vec<Arc<dyn IssueChild>>,
    ) -> Result<Registry, ConfigError> {
        let streams = components(settings, children)?;
        for name in settings.streams.names() {
            if !streams.iter().any(|s| s.name() == name) {
                let known: Vec<&str> = streams.iter().map(|s| s.name()).collect();
                return Err(ConfigError::Load(format!(
                    "unknown stream [streams.{name}]: the streams are {}",
                    known.join(", ")
                )));
            }
        }
        Ok(Registry { streams })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Stream>> {
        self.streams.iter()
    }

    /// The stream named `name` (or one of its aliases), ignoring case.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Stream>> {
        let name = name.trim().to_ascii_lowercase();
        self.streams
            .iter()
            .find(|s| s.name() == name || s.aliases().contains(&name.as_str()))
    }

    /// The streams that follow `leader` ([`Schedule::follows`]).
    pub fn followers(&self, leader: &str) -> impl Iterator<Item = &Arc<dyn Stream>> {
        self.streams
            .iter()
            .filter(move |s| s.schedule().follows == Some(leader))
    }

    /// The names of the streams, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.streams.iter().map(|s| s.name()).collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let url = url::Url::parse("http://127.0.0.1:8080").expect("url");
        Settings::for_site(&url, "demo@example.com", secrecy::SecretString::from("t"))
            .expect("settings")
    }

    #[test]
    fn the_registry_lists_every_stream_once_and_finds_them_by_name_or_alias() {
        let registry = Registry::new(&settings()).expect("the registry");
        let names = registry.names();
        assert_eq!(
            names,
            [
                "projects",
                "issues",
                "users",
                "audit_records",
                "org_events",
                "census",
                "fields",
                "field_options",
                "status_categories",
                "statuses",
                "issue_types",
                "priorities",
                "resolutions",
                "project_categories",
                "components",
                "versions",
                "user_groups",
                "boards",
                "sprints"
            ]
        );
        assert_eq!(
            registry.get("AUDIT").map(|s| s.name()),
            Some("audit_records")
        );
        assert!(registry.get("comments").is_none());
        let followers: Vec<&str> = registry.followers("issues").map(|s| s.name()).collect();
        assert_eq!(followers, ["census"]);
        let followers: Vec<&str> = registry.followers("fields").map(|s| s.name()).collect();
        assert_eq!(followers, ["field_options"]);
    }

    #[test]
    fn a_section_for_a_stream_that_does_not_exist_is_refused_with_the_streams_named() {
        let mut env: std::collections::HashMap<String, String> = [
            ("JIRA_SYNC__JIRA__BASE_URL", "http://127.0.0.1:8080"),
            ("JIRA_SYNC__JIRA__EMAIL", "demo@example.com"),
            ("JIRA_SYNC__JIRA__API_TOKEN", "t"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert(
            "JIRA_SYNC__STREAMS__COMENTS__INTERVAL_SECS".to_owned(),
            "60".to_owned(),
        );
        let settings = Settings::load_from(None, env).expect("loads");
        let err = Registry::new(&settings).expect_err("unknown stream");
        let text = err.to_string();
        assert!(text.contains("unknown stream [streams.coments]"), "{text}");
        assert!(text.contains("projects, issues"), "{text}");
    }
}
