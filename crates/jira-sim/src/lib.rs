//! A Jira Cloud simulator: a real HTTP server with deterministic data that every test and
//! `jira-sync demo` talk to instead of a real site.
//!
//! The simulator answers the REST endpoints the daemon uses with the shapes, paging caps, error
//! bodies and headers of Jira Cloud (see the API notes), injects faults on request, and exposes
//! the ground truth plus a small control API under `/__sim/` so tests can mutate the site and
//! compare a sync against what the API shows.

#![forbid(unsafe_code)]

mod admin;
mod agile;
mod catalog;
mod cli;
mod control;
mod custom;
mod data;
mod dc;
mod faults;
mod fields;
mod gate;
mod groups;
mod jql;
mod oauth;
mod org;
mod reference;
mod render;
mod rendered;
mod routes;
mod search;
mod site;
pub mod time;
mod work;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::time::parse_zone;

pub use cli::{SimSize, SimulateArgs, serve_cli};
pub use faults::{FaultKind, FaultPlan, Storm};

/// The shape and behaviour of a simulated site.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Live projects; one archived project holding some issues is always added.
    pub projects: usize,
    /// Total issues across projects, one big project holding about 40 %.
    pub issues: usize,
    pub users: usize,
    pub audit_records: usize,
    /// IANA zone of the API user (`/myself` `timeZone`); JQL date literals are read in it.
    pub user_time_zone: String,
    /// IANA zone used to render timestamps in responses (`UTC` renders `+0000`).
    pub site_time_zone: String,
    /// E-mail accepted in Basic auth.
    pub email: String,
    /// API token accepted in Basic auth, and as a Bearer token.
    pub api_token: String,
    /// Without admin rights the users and audit endpoints answer 403.
    pub admin: bool,
    /// A mutation becomes visible to `/search/jql` only after this many milliseconds.
    pub search_lag_ms: u64,
    /// The organization whose audit events the Admin API serves (`/admin/v1/orgs/{org_id}`).
    pub org_id: String,
    /// The organization API key the Admin API accepts as a Bearer token.
    pub org_api_key: String,
    /// Organization audit events generated at start.
    pub org_events: usize,
    /// The site's cloudId: `/_edge/tenant_info` and the gateway's `/ex/jira/{cloud_id}`.
    pub cloud_id: String,
    /// A scoped API token for `email`: accepted through the gateway only.
    pub scoped_token: String,
    /// Serve as Jira Data Center: `deploymentType` `DataCenter`, `/rest/api/2` only,
    /// `/rest/api/2/search` with `startAt` paging instead of `/search/jql`, `/project` and
    /// `/user/search` instead of the Cloud listings, users by `key` and `name` (see `dc.rs`).
    pub data_center: bool,
    /// On Data Center, behave like Jira 10: a user search yields only its first this many
    /// matches however it is paged (Jira 10 uses 100; JRASERVER-78660). `None`: Jira 9 and
    /// earlier, where `startAt` pages through every match.
    pub dc_user_window: Option<usize>,
    /// On Data Center, the most full issues a `/rest/api/2/search` page holds, whatever
    /// `maxResults` asks (an admin's `jira.search.views.default.max`; 100 when `None`).
    pub dc_search_max: Option<usize>,
    /// The OAuth 2.0 (3LO) app the token endpoint accepts.
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    /// A refresh token valid at start, as if consent had been given.
    pub oauth_refresh_token: String,
    /// How long an access token lives.
    pub oauth_access_ttl: Duration,
    /// How long a spent refresh token keeps working (Atlassian: 10 minutes).
    pub oauth_refresh_leeway: Duration,
    /// Paths (prefixes) the credentials lack the scope of: they answer 401 while every other
    /// endpoint, `/myself` included, answers (a scoped token or an OAuth app without a scope).
    pub unscoped_paths: Vec<String>,
    /// How far the site's clock is ahead of this machine's (negative: behind), in
    /// milliseconds. Every time the site tells (`updated`, `created`, audit records, the
    /// `Date` header, `serverTime`) and every time it reads (JQL dates) is on its own clock.
    pub clock_offset_ms: i64,
    /// The worklog feeds (`/worklog/updated`, `/worklog/deleted`) leave out what changed in
    /// this last stretch of time (Jira: one minute).
    pub worklog_feed_quiet_ms: i64,
    /// The share of issues with more worklogs than an issue page embeds (0.005).
    pub long_worklog_share: f64,
    /// The heavy profile: 30 more custom fields (44 in all; texts, long rich texts, numbers,
    /// dates, users, URLs, labels) and descriptions of a dozen paragraphs or more, so an issue
    /// with every field is about 30 KB and a page of 100 about 3 MB, as big real sites serve
    /// them. Off by default (about 11 KB an issue).
    pub heavy: bool,
}

impl SimConfig {
    fn preset(
        projects: usize,
        issues: usize,
        users: usize,
        audit_records: usize,
        org_events: usize,
    ) -> Self {
        SimConfig {
            seed: 42,
            projects,
            issues,
            users,
            audit_records,
            user_time_zone: "UTC".to_owned(),
            site_time_zone: "UTC".to_owned(),
            email: "demo@example.com".to_owned(),
            api_token: "demo-token".to_owned(),
            admin: true,
            search_lag_ms: 0,
            org_id: "5d1e9c2a-7b3f-4e8d-a6c1-0f2e4b8d9a37".to_owned(),
            org_api_key: "demo-org-key".to_owned(),
            org_events,
            cloud_id: "3f5c1a7e-2b4d-4c6e-9a8b-7d1e0f2a3b4c".to_owned(),
            scoped_token: "demo-scoped-token".to_owned(),
            data_center: false,
            dc_user_window: None,
            dc_search_max: None,
            oauth_client_id: "demo-client-id".to_owned(),
            oauth_client_secret: "demo-client-secret".to_owned(),
            oauth_refresh_token: "demo-refresh-token".to_owned(),
            oauth_access_ttl: Duration::from_secs(3600),
            oauth_refresh_leeway: Duration::from_secs(600),
            clock_offset_ms: 0,
            worklog_feed_quiet_ms: 60_000,
            long_worklog_share: 0.005,
            unscoped_paths: Vec::new(),
            heavy: false,
        }
    }

    /// Fast for tests: 3 live projects + 1 archived, 260 issues (one project has over 100).
    pub fn small() -> Self {
        Self::preset(3, 260, 130, 1100, 240)
    }

    /// The demo and benchmark site.
    pub fn medium() -> Self {
        Self::preset(12, 20_000, 500, 3_000, 1_500)
    }

    pub fn large() -> Self {
        Self::preset(30, 100_000, 2_000, 10_000, 5_000)
    }
}

/// What makes an issue's JSON hard to store, as real sites serve it now and then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Poison {
    /// The summary holds a NUL character (`\u0000`): valid JSON, refused by PostgreSQL's
    /// `text` and `jsonb`.
    Nul,
    /// The summary holds a lone UTF-16 surrogate escape (`\ud83d` without its pair).
    LoneSurrogate,
    /// A custom field nested this many arrays deep.
    Deep(usize),
    /// `fields.updated` is not a timestamp: the record cannot be read.
    Unreadable,
    /// The assignee's `accountId` is 8,000 characters that do not compress: readable JSON,
    /// but PostgreSQL refuses it in an indexed column (an index row holds at most 2,704
    /// bytes).
    Oversized,
}

/// Counts the requests being answered at once (from arrival to response, `/__sim/` aside).
#[derive(Debug, Default)]
pub(crate) struct Concurrency {
    now: AtomicU64,
    peak: AtomicU64,
}

/// One request being answered; dropping it ends it.
pub(crate) struct InFlight<'a>(&'a Concurrency);

impl Concurrency {
    pub fn enter(&self) -> InFlight<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ways the simulated server lies, for tests of a client that must not believe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lies {
    /// `/search/jql` answers a page after the first with the very token it was sent.
    pub repeat_page_token: bool,
    /// `/project/search` claims this many projects, whatever there are, and calls no page
    /// but an empty one the last.
    pub project_total: Option<usize>,
    /// `/issue/bulkfetch` answers `{}`: no `issues` array at all.
    pub bulkfetch_without_issues: bool,
}

/// A change that lands between two pages of a scan: after the simulator has served page
/// `after_page` (1-based) of a full-field search (`/search/jql`, or Data Center's
/// `/rest/api/2/search`) whose JQL contains `jql_contains`, it updates the first
/// `update_served` issues of that page, deletes the next `delete_served` and creates `create`
/// issues in `create_in`. Offset paging then shifts: the issues behind the changed ones move
/// forward by as many places, and a client that trusts the pages skips them. Fires once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MidScan {
    pub jql_contains: String,
    pub after_page: usize,
    pub update_served: usize,
    pub delete_served: usize,
    pub create: usize,
    pub create_in: String,
}

/// Ground truth: what the API shows the configured (admin) user right now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Truth {
    /// Live and archived projects, ascending by id.
    pub projects: Vec<TruthProject>,
    /// Issues that exist, ascending by id.
    pub issues: Vec<TruthIssue>,
    /// Account ids in the order `/users/search` lists them (on Data Center, user keys).
    pub users: Vec<String>,
    /// Audit record ids, ascending.
    pub audit_ids: Vec<i64>,
    /// Organization event ids, in processing order (the feed's ascending order).
    #[serde(default)]
    pub org_event_ids: Vec<String>,
}

/// The work on the live issues (each list ascending): what the API shows now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TruthWork {
    /// Every change history of every live issue.
    pub changelog_ids: Vec<i64>,
    /// Comments of live issues.
    pub comment_ids: Vec<i64>,
    /// Comments deleted in Jira (through [`Simulator::delete_comment`]).
    pub deleted_comment_ids: Vec<i64>,
    /// Worklogs of live issues.
    pub worklog_ids: Vec<i64>,
    /// Worklogs deleted in Jira (the `/worklog/deleted` feed lists them).
    pub deleted_worklog_ids: Vec<i64>,
    /// Links between two live issues.
    pub link_ids: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthProject {
    pub id: i64,
    pub key: String,
    pub archived: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthIssue {
    pub id: i64,
    pub key: String,
    pub project_id: i64,
    /// Exactly the instant the API renders, at millisecond precision.
    pub updated: chrono::DateTime<chrono::Utc>,
}

/// The users an issue names, identified as the API identifies them: account ids, on Data
/// Center user keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthIssueUsers {
    pub id: i64,
    pub assignee: Option<String>,
    pub reporter: String,
    pub creator: String,
}

/// One request as the simulator saw it (`/__sim/` requests are not logged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestLogEntry {
    /// Wall-clock arrival time.
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

impl RequestLogEntry {
    /// The path with its ids and issue keys folded, for counting requests by endpoint:
    /// `/rest/api/3/issue/ACME-7/comment` is `/rest/api/{id}/issue/{id}/comment`.
    pub fn endpoint(&self) -> String {
        self.path
            .split('/')
            .map(|part| match part.chars().next() {
                Some(c) if c.is_ascii_digit() => "{id}",
                _ if part.contains('-') && part.chars().any(|c| c.is_ascii_digit()) => "{id}",
                _ => part,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// State shared by the server's handlers and the `Simulator` handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    /// The zone `/myself` reports, and the one JQL date literals are read in (they differ
    /// only when the reported name is not a zone: [`Simulator::set_user_time_zone`]).
    user_zone: RwLock<(String, Tz)>,
    pub site_tz: Tz,
    pub base_url: String,
    pub admin: AtomicBool,
    /// The API token was revoked: every request with it is refused (401).
    pub revoked: AtomicBool,
    /// How the server lies ([`Simulator::set_lies`]).
    lies: Mutex<Lies>,
    /// Paths (prefixes) that answer an error status until told otherwise ([`Simulator::fail_path`]).
    failing: Mutex<Vec<(String, u16)>>,
    /// Requests being answered now, and the most at once ([`Simulator::peak_concurrency`]).
    pub concurrency: Concurrency,
    /// Changes waiting for a scan's page ([`Simulator::change_mid_scan`]), with the pages of
    /// their scan served so far.
    mid_scan: Mutex<Vec<(MidScan, usize)>>,
    site: RwLock<site::Site>,
    faults: Mutex<faults::FaultState>,
    log: Mutex<Vec<RequestLogEntry>>,
    /// The JQL of every `POST /rest/api/3/search/jql` answered, in order of arrival.
    searches: Mutex<Vec<String>>,
    /// Counts write accesses to `site`, so rendered issues are never served stale.
    generation: AtomicU64,
    /// How far the clock was moved on at run time ([`Simulator::advance_clock`]), in ms.
    advanced_ms: std::sync::atomic::AtomicI64,
    rendered: Mutex<rendered::Rendered>,
    /// Locked before `site` where a handler needs both.
    org: Mutex<org::Org>,
    oauth: Mutex<oauth::OAuth>,
}

impl Shared {
    // A panic while a lock is held leaves consistent data behind in this simulator (every
    // mutation is a few field writes), so a poisoned lock is simply taken over.
    pub fn site(&self) -> RwLockReadGuard<'_, site::Site> {
        self.site.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn site_mut(&self) -> RwLockWriteGuard<'_, site::Site> {
        let site = self.site.write().unwrap_or_else(PoisonError::into_inner);
        // Under the write lock: no reader can render between this and the change.
        self.generation.fetch_add(1, Ordering::SeqCst);
        site
    }

    /// `issue` rendered under `sel` (fingerprint `sel_key`), from the cache when it holds it.
    /// `ctx` must render the site held by the caller's read guard.
    pub fn rendered_issue(
        &self,
        ctx: &render::Ctx<'_>,
        issue: &data::Issue,
        sel: &fields::FieldSel,
        sel_key: u64,
    ) -> Box<serde_json::value::RawValue> {
        let generation = self.generation.load(Ordering::SeqCst);
        let cached = self.rendered().get(generation, issue, sel_key);
        cached.unwrap_or_else(|| {
            let json = rendered::render(ctx, issue, sel);
            self.rendered().put(generation, issue, sel_key, &json);
            json
        })
    }

    fn rendered(&self) -> MutexGuard<'_, rendered::Rendered> {
        self.rendered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> MutexGuard<'_, faults::FaultState> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn searches(&self) -> MutexGuard<'_, Vec<String>> {
        self.searches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn log(&self) -> MutexGuard<'_, Vec<RequestLogEntry>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn org(&self) -> MutexGuard<'_, org::Org> {
        self.org.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn oauth(&self) -> MutexGuard<'_, oauth::OAuth> {
        self.oauth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The site's truth and the organization's event ids.
    pub fn truth(&self) -> Truth {
        let mut truth = self.site().truth();
        if self.config.data_center {
            truth.users = (0..truth.users.len()).map(dc::user_key).collect();
        }
        truth.org_event_ids = self.org().ids();
        truth
    }

    pub fn is_admin(&self) -> bool {
        self.admin.load(Ordering::Relaxed)
    }

    pub fn lies(&self) -> Lies {
        self.lies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The zone JQL date literals are read in.
    pub fn user_tz(&self) -> Tz {
        self.user_zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }

    /// The zone name `/myself` reports.
    pub fn user_zone_name(&self) -> String {
        self.user_zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Counts a full-field page of `jql` that served `served` (ids, in order) and applies the
    /// changes waiting for it. Call with no lock on the site held.
    pub fn after_scan_page(&self, jql: &str, served: &[i64]) {
        let due: Vec<MidScan> = {
            let mut waiting = self.mid_scan.lock().unwrap_or_else(PoisonError::into_inner);
            let mut due = Vec::new();
            waiting.retain_mut(|(change, pages)| {
                if !jql.contains(&change.jql_contains) {
                    return true;
                }
                *pages += 1;
                if *pages < change.after_page {
                    return true;
                }
                due.push(change.clone());
                false
            });
            due
        };
        for change in due {
            let now = self.now_ms();
            let mut site = self.site_mut();
            let mut served = served.iter();
            for &id in served.by_ref().take(change.update_served) {
                let _ = site.update_issue(id, now, self.lag_ms());
            }
            for &id in served.take(change.delete_served) {
                let _ = site.delete_issue(id, now, self.lag_ms());
            }
            for _ in 0..change.create {
                let _ = site.create_issue(&change.create_in, now, self.lag_ms());
            }
        }
    }

    /// The status `path` answers with, if a test made it fail.
    pub fn failing(&self, path: &str) -> Option<u16> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, status)| *status)
    }

    pub fn lag_ms(&self) -> i64 {
        i64::try_from(self.config.search_lag_ms).unwrap_or(i64::MAX / 2)
    }

    /// Milliseconds since the epoch on the site's clock ([`SimConfig::clock_offset_ms`]).
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
            + self.config.clock_offset_ms
            + self.advanced_ms.load(Ordering::Relaxed)
    }
}

/// An id, a name and a kind or state: a board (`scrum`, `kanban`) or a sprint (`closed`, …).
pub type Named = (i64, String, String);

/// A running simulator. Dropping it stops the server; `shutdown` stops it gracefully.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on a free port of 127.0.0.1.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> anyhow::Result<Simulator> {
        let user_tz = parse_zone(&config.user_time_zone)
            .with_context(|| format!("unknown user time zone {:?}", config.user_time_zone))?;
        let site_tz = parse_zone(&config.site_time_zone)
            .with_context(|| format!("unknown site time zone {:?}", config.site_time_zone))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener
            .local_addr()
            .context("listener has no local address")?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        let base_url = format!("http://{host}:{}", addr.port());
        let generator = config.clone();
        let (site, org) = tokio::task::spawn_blocking(move || {
            let site = data::generate(&generator);
            let org = org::Org::generate(&generator, site.users.len());
            (site, org)
        })
        .await
        .context("generating the simulated site failed")?;
        let config_refresh_token = config.oauth_refresh_token.clone();
        let shared = Arc::new(Shared {
            admin: AtomicBool::new(config.admin),
            revoked: AtomicBool::new(false),
            lies: Mutex::new(Lies::default()),
            concurrency: Concurrency::default(),
            failing: Mutex::new(Vec::new()),
            mid_scan: Mutex::new(Vec::new()),
            user_zone: RwLock::new((config.user_time_zone.clone(), user_tz)),
            config,
            site_tz,
            base_url,
            site: RwLock::new(site),
            faults: Mutex::new(faults::FaultState::new(FaultPlan::default())),
            log: Mutex::new(Vec::new()),
            searches: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            advanced_ms: std::sync::atomic::AtomicI64::new(0),
            rendered: Mutex::new(rendered::Rendered::default()),
            org: Mutex::new(org),
            oauth: Mutex::new(oauth::OAuth::new(&config_refresh_token)),
        });
        // The gateway's prefix is stripped before routing, so it needs a router of its own.
        let app = axum::Router::new()
            .fallback_service(routes::router(shared.clone()))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                oauth::gateway,
            ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(%error, "simulator server stopped with an error");
            }
        });
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn truth(&self) -> Truth {
        self.shared.truth()
    }

    /// Assignee, reporter and creator of every issue that exists, ascending by id.
    pub fn issue_users(&self) -> Vec<TruthIssueUsers> {
        let site = self.shared.site();
        let ctx = render::Ctx::new(&self.shared, &site);
        let id = |index: u32| ctx.user_id(index as usize).unwrap_or_default();
        site.issues
            .iter()
            .filter(|i| !i.deleted)
            .map(|i| TruthIssueUsers {
                id: i.id,
                assignee: i.assignee.map(id),
                reporter: id(i.reporter),
                creator: id(i.creator),
            })
            .collect()
    }

    /// Replaces the fault plan; request numbering for the random faults restarts at zero.
    pub fn set_faults(&self, plan: FaultPlan) {
        *self.shared.faults() = faults::FaultState::new(plan);
    }

    pub fn request_log(&self) -> Vec<RequestLogEntry> {
        self.shared.log().clone()
    }

    /// Drops the issues rendered so far: the next searches render them again, as the first
    /// search of each did (the benchmark's cold runs).
    pub fn forget_rendered(&self) {
        drop(self.shared.site_mut());
    }

    /// The JQL of every `POST /rest/api/3/search/jql` the simulator answered, oldest first.
    pub fn search_log(&self) -> Vec<String> {
        self.shared.searches().clone()
    }

    /// How many logged requests had a path starting with `path_prefix`.
    pub fn request_count(&self, path_prefix: &str) -> u64 {
        self.shared
            .log()
            .iter()
            .filter(|e| e.path.starts_with(path_prefix))
            .count() as u64
    }

    /// The change histories, comments, worklogs and links the API shows now.
    pub fn work_truth(&self) -> TruthWork {
        work::truth(&self.shared.site())
    }

    /// Moves the site's clock on by `by` (as if that much time had passed since the last
    /// change): what it stamps and what it tells from now on.
    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.shared.advanced_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The reference data as the API shows it now: per kind (`statuses`, `status_categories`,
    /// `issue_types`, `priorities`, `resolutions`, `project_categories`, `components`,
    /// `versions`, `fields`, `field_options`), its (id, name) pairs, sorted.
    pub fn reference_truth(&self) -> BTreeMap<&'static str, Vec<(String, String)>> {
        reference::truth(&self.shared.site())
    }

    /// The boards (id, name, type) and every scrum board's sprints (id, name, state) the
    /// Agile API shows now.
    pub fn agile_truth(&self) -> (Vec<Named>, Vec<Named>) {
        let site = self.shared.site();
        let now = self.shared.now_ms();
        let boards = agile::boards(&site);
        let sprints = boards
            .iter()
            .filter(|b| b.2)
            .flat_map(|b| agile::sprints(&site, b.3, now))
            .map(|s| (s.id, s.name, s.state.to_owned()))
            .collect();
        let boards = boards
            .into_iter()
            .map(|(id, name, scrum, _)| {
                (id, name, if scrum { "scrum" } else { "kanban" }.to_owned())
            })
            .collect();
        (boards, sprints)
    }

    /// Renames the status `id` (issues show the new name; their `updated` stays).
    pub fn rename_status(&self, id: &str, name: &str) -> anyhow::Result<()> {
        let status = catalog::STATUSES
            .iter()
            .find(|s| s.id == id)
            .with_context(|| format!("no status {id}"))?;
        let mut site = self.shared.site_mut();
        site.reference
            .status_names
            .insert(status.id, name.to_owned());
        Ok(())
    }

    /// Adds an unreleased version to project `key`; returns its id.
    pub fn add_version(&self, key: &str, name: &str) -> anyhow::Result<i64> {
        let mut site = self.shared.site_mut();
        let index = site
            .projects
            .iter()
            .position(|p| p.key == key)
            .with_context(|| format!("no project {key}"))?;
        let id = 20_000 + site.reference.versions.len() as i64;
        site.reference.versions.push((index, id, name.to_owned()));
        Ok(id)
    }

    /// Removes a version [`Simulator::add_version`] added.
    pub fn remove_version(&self, id: i64) -> anyhow::Result<()> {
        let mut site = self.shared.site_mut();
        let before = site.reference.versions.len();
        site.reference.versions.retain(|(_, v, _)| *v != id);
        anyhow::ensure!(
            site.reference.versions.len() < before,
            "no added version {id}"
        );
        Ok(())
    }

    /// Adds an option to the select field Severity (`customfield_10015`); returns its id.
    pub fn add_field_option(&self, value: &str) -> i64 {
        let mut site = self.shared.site_mut();
        let id = 30_000 + site.reference.options.len() as i64;
        site.reference.options.push((id, value.to_owned()));
        id
    }

    /// Removes an option [`Simulator::add_field_option`] added.
    pub fn remove_field_option(&self, id: i64) -> anyhow::Result<()> {
        let mut site = self.shared.site_mut();
        let before = site.reference.options.len();
        site.reference.options.retain(|(o, _)| *o != id);
        anyhow::ensure!(
            site.reference.options.len() < before,
            "no added option {id}"
        );
        Ok(())
    }

    /// The values issue `id`'s multi-valued fields took (labels, components and fix versions
    /// by id, sprints by id in `customfield_10020`): per (field id, epoch ms), the whole set from
    /// then on, at its creation (non-empty sets) and after each change.
    pub fn multiselect_history(
        &self,
        id: i64,
    ) -> BTreeMap<(&'static str, i64), std::collections::BTreeSet<String>> {
        work::multi_history(&self.shared.site(), id)
    }

    /// Every group membership the API shows: (group id, group name, account id), sorted.
    pub fn group_truth(&self) -> Vec<(String, String, String)> {
        groups::truth(&self.shared.site())
    }

    /// Removes the user `account_id` from the group named `group`.
    pub fn remove_group_member(&self, group: &str, account_id: &str) -> anyhow::Result<()> {
        let mut site = self.shared.site_mut();
        let g = groups::GROUPS
            .iter()
            .position(|n| *n == group)
            .with_context(|| format!("no group {group}"))?;
        let u = site
            .users
            .iter()
            .position(|u| u.account_id == account_id)
            .with_context(|| format!("no user {account_id}"))?;
        anyhow::ensure!(
            groups::members(&site, g).contains(&u),
            "{account_id} is not in {group}"
        );
        site.reference.left_groups.push((g, u));
        Ok(())
    }

    /// How many change histories, comments and worklogs issue `id` has.
    pub fn work_counts(&self, id: i64) -> (usize, usize, usize) {
        let site = self.shared.site();
        let count = |n: Option<usize>| n.unwrap_or(0);
        (
            count(site.work.histories.get(&id).map(Vec::len)),
            count(site.work.comments.get(&id).map(Vec::len)),
            count(site.work.worklogs.get(&id).map(Vec::len)),
        )
    }

    /// The comment ids of issue `id`, oldest first.
    pub fn comment_ids(&self, id: i64) -> Vec<i64> {
        let site = self.shared.site();
        site.work
            .comments
            .get(&id)
            .map(|list| list.iter().map(|c| c.id).collect())
            .unwrap_or_default()
    }

    /// The worklog ids of issue `id`, oldest first.
    pub fn worklog_ids(&self, id: i64) -> Vec<i64> {
        let site = self.shared.site();
        site.work
            .worklogs
            .get(&id)
            .map(|list| list.iter().map(|w| w.id).collect())
            .unwrap_or_default()
    }

    /// Per status id, the milliseconds issue `id` spent in it before its current status.
    pub fn time_in_status(&self, id: i64) -> std::collections::BTreeMap<String, i64> {
        self.shared.site().time_in_status(id)
    }

    /// Adds a comment by the API user to issue `id` (its `updated` moves); returns its id.
    pub fn add_comment(&self, id: i64) -> anyhow::Result<i64> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().add_comment(id, now, lag)
    }

    /// Edits a comment (its body and `updated`, and its issue's `updated`).
    pub fn edit_comment(&self, comment: i64) -> anyhow::Result<()> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().edit_comment(comment, now, lag)
    }

    /// Deletes a comment (its issue's `updated` moves).
    pub fn delete_comment(&self, comment: i64) -> anyhow::Result<()> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().delete_comment(comment, now, lag)
    }

    /// Logs work on issue `id` (a history and its `updated`); returns the worklog's id.
    pub fn add_worklog(&self, id: i64) -> anyhow::Result<i64> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().add_worklog(id, now, lag)
    }

    /// Edits a worklog's comment and time spent. Its issue does not change: only the
    /// `/worklog/updated` feed tells (Jira documents no more than that).
    pub fn edit_worklog(&self, worklog: i64) -> anyhow::Result<()> {
        let now = self.shared.now_ms();
        self.shared.site_mut().edit_worklog(worklog, now)
    }

    /// A worklog's `updated` and seconds, if it exists.
    pub fn worklog_state(&self, worklog: i64) -> Option<(chrono::DateTime<chrono::Utc>, i64)> {
        let site = self.shared.site();
        site.work
            .worklog(worklog)
            .map(|w| (site::to_utc(w.updated_ms), w.seconds))
    }

    /// Deletes a worklog: the `/worklog/deleted` feed lists it from now on.
    pub fn delete_worklog(&self, worklog: i64) -> anyhow::Result<()> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().delete_worklog(worklog, now, lag)
    }

    /// Links two issues ("`outward` blocks `inward`"); returns the link's id.
    pub fn add_link(&self, outward: i64, inward: i64) -> anyhow::Result<i64> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().add_link(outward, inward, now, lag)
    }

    /// Removes a link; both issues change.
    pub fn delete_link(&self, link: i64) -> anyhow::Result<()> {
        let (now, lag) = (self.shared.now_ms(), self.shared.lag_ms());
        self.shared.site_mut().delete_link(link, now, lag)
    }

    /// Makes the server lie as `lies` says (the default: it tells the truth).
    pub fn set_lies(&self, lies: Lies) {
        *self
            .shared
            .lies
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lies;
    }

    /// The most requests the simulator was answering at once since the last call (it starts
    /// counting anew from the requests in flight now).
    pub fn peak_concurrency(&self) -> u64 {
        let c = &self.shared.concurrency;
        c.peak.swap(c.now.load(Ordering::SeqCst), Ordering::SeqCst)
    }

    /// Makes every request to a path starting with `prefix` answer `status` (with the body
    /// Jira sends for it), until called again with `None`.
    pub fn fail_path(&self, prefix: &str, status: Option<u16>) {
        let mut failing = self
            .shared
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failing.retain(|(p, _)| p != prefix);
        if let Some(status) = status {
            failing.push((prefix.to_owned(), status));
        }
    }

    /// Makes `change` land between two pages of a scan (see [`MidScan`]).
    pub fn change_mid_scan(&self, change: MidScan) {
        self.shared
            .mid_scan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((change, 0));
    }

    /// Changes the API user's zone, as the user would in their profile: `/myself` reports
    /// `name` from now on, and JQL date literals are read in it when it is a zone (a name that
    /// is not, such as one from a newer zone database, changes only what `/myself` says).
    pub fn set_user_time_zone(&self, name: &str) {
        let mut zone = self
            .shared
            .user_zone
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let tz = parse_zone(name).unwrap_or(zone.1);
        *zone = (name.to_owned(), tz);
    }

    /// Revokes the API token (`true`): from now on every request with it answers 401, as for
    /// a token deleted in id.atlassian.com.
    pub fn revoke_token(&self, revoked: bool) {
        self.shared.revoked.store(revoked, Ordering::Relaxed);
    }

    pub fn set_admin(&self, admin: bool) {
        self.shared.admin.store(admin, Ordering::Relaxed);
    }

    pub fn create_issue(&self, project_key: &str) -> anyhow::Result<TruthIssue> {
        self.shared
            .site_mut()
            .create_issue(project_key, self.shared.now_ms(), self.shared.lag_ms())
    }

    pub fn update_issue(&self, id: i64) -> anyhow::Result<TruthIssue> {
        self.shared
            .site_mut()
            .update_issue(id, self.shared.now_ms(), self.shared.lag_ms())
    }

    /// Makes the issue's JSON carry `poison` (`None`: heals it); counts as an edit.
    pub fn poison_issue(&self, id: i64, poison: Option<Poison>) -> anyhow::Result<TruthIssue> {
        let now = self.shared.now_ms();
        self.shared
            .site_mut()
            .poison_issue(id, poison, now, self.shared.lag_ms())
    }

    pub fn delete_issue(&self, id: i64) -> anyhow::Result<()> {
        self.shared
            .site_mut()
            .delete_issue(id, self.shared.now_ms(), self.shared.lag_ms())
    }

    /// Moves an issue to another project: same id, a new key in the target project.
    pub fn move_issue(&self, id: i64, to_project_key: &str) -> anyhow::Result<TruthIssue> {
        self.shared.site_mut().move_issue(
            id,
            to_project_key,
            self.shared.now_ms(),
            self.shared.lag_ms(),
        )
    }

    /// Adds a user and returns its account id (on Data Center, its key).
    pub fn add_user(&self) -> String {
        let mut site = self.shared.site_mut();
        let account_id = site.add_user();
        match self.shared.config.data_center {
            true => dc::user_key(site.users.len() - 1),
            false => account_id,
        }
    }

    /// Adds an audit record created now and returns its id.
    pub fn add_audit_record(&self) -> i64 {
        let now = self.shared.now_ms();
        self.shared.site_mut().add_audit_record(now)
    }

    /// Appends an organization audit event processed now and returns its id.
    pub fn add_org_event(&self) -> String {
        admin::append_event(&self.shared)
    }

    /// Ends the life of every OAuth access token issued so far.
    pub fn expire_access_tokens(&self) {
        self.shared.oauth().expire_access_tokens();
    }

    /// How many refresh-token grants succeeded.
    pub fn oauth_refreshes(&self) -> u64 {
        self.shared.oauth().refreshes
    }

    /// Whether the organization API key has the `read:events:admin` scope (else 403).
    pub fn set_org_key_scope(&self, granted: bool) {
        self.shared.org().scope_granted = granted;
    }

    /// Stops accepting connections, lets open requests finish for up to five seconds, then
    /// stops the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestLogEntry;

    #[test]
    fn an_endpoint_folds_ids_and_issue_keys_but_not_names() {
        let entry = |path: &str| RequestLogEntry {
            at: std::time::SystemTime::UNIX_EPOCH,
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: String::new(),
            status: 200,
        };
        assert_eq!(
            entry("/rest/api/3/issue/ACME-7/comment").endpoint(),
            "/rest/api/{id}/issue/{id}/comment"
        );
        assert_eq!(
            entry("/rest/api/3/project/10001/versions").endpoint(),
            "/rest/api/{id}/project/{id}/versions"
        );
        assert_eq!(
            entry("/rest/api/3/field/customfield_10015/context").endpoint(),
            "/rest/api/{id}/field/customfield_10015/context"
        );
        assert_eq!(
            entry("/rest/api/3/changelog/bulkfetch").endpoint(),
            "/rest/api/{id}/changelog/bulkfetch"
        );
    }
}
